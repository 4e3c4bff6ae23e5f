/// Log metadata keys, defined once.
package enum LogKey {
    package static let enrollmentID = "mdm.enrollment_id"
    package static let messageType = "mdm.message_type"
}
