import Foundation
import X509

/// Verifies the identity a device presents: a detached CMS `Mdm-Signature` over the request
/// body, or a client certificate forwarded by a TLS-terminating proxy.
///
/// SKELETON: the implementation lands with the identity work; the API is fixed.
package struct DeviceIdentityVerifier: Sendable {
    package init(trustRoots: [Certificate], intermediates: [Certificate] = [], now: @escaping @Sendable () -> Date = Date.init) {}

    /// Verifies an `Mdm-Signature` header value (base64 of a detached CMS SignedData) over `body`.
    package func verifySignature(header: String, body: [UInt8]) async throws(DeviceIdentityError) -> DeviceIdentity {
        throw .missingIdentity
    }

    /// Verifies a certificate forwarded by the proxy: RFC 9440 (`:base64-DER:`) or URL-escaped PEM.
    package func verifyForwardedCertificate(header: String) async throws(DeviceIdentityError) -> DeviceIdentity {
        throw .missingIdentity
    }
}
