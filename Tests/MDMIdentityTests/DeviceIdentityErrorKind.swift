import MDMIdentity

extension DeviceIdentityError {
    enum Kind {
        case missingIdentity
        case malformedHeader
        case malformedSignature
        case signatureMismatch
        case untrustedCertificate
    }

    /// The case without its reason, for tests that care which check refused an identity.
    var kind: Kind {
        switch self {
        case .missingIdentity: .missingIdentity
        case .malformedHeader: .malformedHeader
        case .malformedSignature: .malformedSignature
        case .signatureMismatch: .signatureMismatch
        case .untrustedCertificate: .untrustedCertificate
        }
    }
}

/// The error `operation` throws, or nil when it succeeds.
func identityFailure(
    _ operation: () async throws(DeviceIdentityError) -> DeviceIdentity
) async -> DeviceIdentityError? {
    do {
        _ = try await operation()
        return nil
    } catch {
        return error
    }
}
