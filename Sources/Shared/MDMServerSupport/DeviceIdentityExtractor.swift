import HTTPTypes
import MDMIdentity
import X509

/// Where device endpoints take the identity certificate from.
package enum IdentityMode: String, Sendable, CaseIterable {
    /// `Mdm-Signature` on every request (the device talks to us directly or through a plain proxy).
    case signature
    /// A certificate forwarded by a proxy that terminated mutual TLS, in `certificateHeader`.
    case header
    /// The forwarded header when present, else `Mdm-Signature`.
    case either
}

/// Device identity settings shared by CheckinService and CommandService.
package struct DeviceIdentityConfiguration: Sendable {
    package var mode: IdentityMode
    /// Header carrying the forwarded client certificate (RFC 9440 or URL-escaped PEM).
    package var certificateHeader: String
    package var trustRoots: [Certificate]
    package var intermediates: [Certificate]
    /// Bind a certificate on first sight when neither the device nor the hash has a binding.
    package var retro: Bool

    package init(
        mode: IdentityMode = .signature,
        certificateHeader: String = "X-Client-Cert",
        trustRoots: [Certificate],
        intermediates: [Certificate] = [],
        retro: Bool = false
    ) {
        self.mode = mode
        self.certificateHeader = certificateHeader
        self.trustRoots = trustRoots
        self.intermediates = intermediates
        self.retro = retro
    }

    /// Reads `MDM_IDENTITY_MODE`, `MDM_CERT_HEADER`, `MDM_CA_CERTS` (required),
    /// `MDM_INTERMEDIATE_CERTS`, `MDM_CERT_RETRO`.
    package init(settings: Settings) throws(ConfigurationError) {
        let modeName = settings.string("MDM_IDENTITY_MODE", default: IdentityMode.signature.rawValue)
        guard let mode = IdentityMode(rawValue: modeName) else {
            let names = IdentityMode.allCases.map(\.rawValue).joined(separator: ", ")
            throw ConfigurationError(setting: "MDM_IDENTITY_MODE", problem: "expected one of \(names), got \(modeName)")
        }
        let header = settings.string("MDM_CERT_HEADER", default: "X-Client-Cert")
        guard HTTPField.Name(header) != nil else {
            throw ConfigurationError(setting: "MDM_CERT_HEADER", problem: "not a valid header name: \(header)")
        }
        let roots = try Self.loadBundle(settings: settings, name: "MDM_CA_CERTS", required: true)
        let intermediates = try Self.loadBundle(settings: settings, name: "MDM_INTERMEDIATE_CERTS", required: false)
        self.init(
            mode: mode,
            certificateHeader: header,
            trustRoots: roots,
            intermediates: intermediates,
            retro: try settings.bool("MDM_CERT_RETRO", default: false)
        )
    }

    private static func loadBundle(settings: Settings, name: String, required: Bool) throws(ConfigurationError)
        -> [Certificate]
    {
        guard let path = settings.string(name) else {
            if required { throw ConfigurationError(setting: name, problem: "required (a PEM file of CA certificates)") }
            return []
        }
        do {
            let certificates = try DeviceIdentityVerifier.loadCertificates(pemFile: path)
            if required && certificates.isEmpty {
                throw ConfigurationError(setting: name, problem: "\(path) holds no certificate")
            }
            return certificates
        } catch let error as ConfigurationError {
            throw error
        } catch {
            throw ConfigurationError(setting: name, problem: "cannot load \(path): \(error)")
        }
    }
}

/// Finds and verifies the identity on a device request according to the configured mode.
package struct DeviceIdentityExtractor: Sendable {
    package let configuration: DeviceIdentityConfiguration
    private let verifier: DeviceIdentityVerifier
    private let certificateHeader: HTTPField.Name?
    private static let signatureHeader = HTTPField.Name("Mdm-Signature")

    package init(configuration: DeviceIdentityConfiguration) {
        self.configuration = configuration
        self.verifier = DeviceIdentityVerifier(
            trustRoots: configuration.trustRoots,
            intermediates: configuration.intermediates
        )
        self.certificateHeader = HTTPField.Name(configuration.certificateHeader)
    }

    package func identify(headers: HTTPFields, body: [UInt8]) async throws(DeviceIdentityError) -> DeviceIdentity {
        let forwarded = certificateHeader.flatMap { headers[$0] }
        let signature = Self.signatureHeader.flatMap { headers[$0] }
        switch configuration.mode {
        case .header:
            guard let forwarded else { throw .missingIdentity }
            return try await verifier.verifyForwardedCertificate(header: forwarded)
        case .signature:
            guard let signature else { throw .missingIdentity }
            return try await verifier.verifySignature(header: signature, body: body)
        case .either:
            if let forwarded {
                return try await verifier.verifyForwardedCertificate(header: forwarded)
            }
            guard let signature else { throw .missingIdentity }
            return try await verifier.verifySignature(header: signature, body: body)
        }
    }
}
