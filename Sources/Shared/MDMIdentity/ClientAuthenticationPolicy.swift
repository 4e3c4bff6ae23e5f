import SwiftASN1
import X509

/// Requires the leaf to allow TLS client authentication when it restricts its usage at all: a
/// certificate without the extendedKeyUsage extension may be used for any purpose (RFC 5280 §4.2.1.12).
struct ClientAuthenticationPolicy: VerifierPolicy {
    let verifyingCriticalExtensions: [ASN1ObjectIdentifier] = [.X509ExtensionID.extendedKeyUsage]

    func chainMeetsPolicyRequirements(chain: UnverifiedCertificateChain) -> PolicyEvaluationResult {
        Self.evaluate(chain.leaf)
    }

    static func evaluate(_ certificate: Certificate) -> PolicyEvaluationResult {
        let usage: ExtendedKeyUsage?
        do {
            usage = try certificate.extensions.extendedKeyUsage
        } catch {
            return .failsToMeetPolicy(reason: "the extendedKeyUsage extension is invalid: \(error)")
        }
        guard let usage else {
            return .meetsPolicy
        }
        guard usage.contains(.clientAuth) || usage.contains(.any) else {
            return .failsToMeetPolicy(reason: "the extendedKeyUsage extension does not allow clientAuth")
        }
        return .meetsPolicy
    }
}
