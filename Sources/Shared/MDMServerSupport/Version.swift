/// The version `/version` reports.
package enum SwiftMDMVersion {
    package static let current = "0.1.0"
}
