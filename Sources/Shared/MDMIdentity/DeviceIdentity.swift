import Crypto
import Foundation
import X509

/// A device identity certificate that passed verification: it chains to a configured CA, is
/// within its validity period and allows client authentication.
package struct DeviceIdentity: Sendable, Hashable {
    /// The DER encoding of the certificate, as presented by the device.
    package var der: [UInt8]
    /// SHA-256 of `der`: the value bound to a device-channel enrollment.
    package var sha256: [UInt8]

    package init(der: [UInt8]) {
        self.der = der
        self.sha256 = Array(SHA256.hash(data: der))
    }

    /// Lowercase hex of `sha256`, the form NanoMDM stores.
    package var sha256Hex: String {
        sha256.map { String(format: "%02x", $0) }.joined()
    }
}

/// Why a presented identity was refused. Devices always see 400 for these.
package enum DeviceIdentityError: Error, Sendable, Equatable {
    /// Neither an `Mdm-Signature` nor a forwarded certificate header was present.
    case missingIdentity
    /// The header was not valid base64 / PEM / RFC 9440 structured field.
    case malformedHeader(String)
    /// The CMS structure could not be parsed or is not a detached SignedData.
    case malformedSignature(String)
    /// The signature does not verify over the request body.
    case signatureMismatch
    /// The certificate does not chain to a trusted CA, is expired, or lacks clientAuth.
    case untrustedCertificate(String)
}

/// Why a configured PEM bundle (trust roots, intermediates) could not be loaded.
package enum CertificateBundleError: Error, Sendable, Equatable {
    case unreadable(path: String, reason: String)
    /// A `CERTIFICATE` block is unterminated or not valid base64.
    case invalidPEM
    case noCertificates
    /// The block at `index` (0-based) is not a valid X.509 certificate.
    case invalidCertificate(index: Int, reason: String)
}
