import Crypto
import Foundation
import SwiftASN1
import X509
import _CryptoExtras

/// How a test `Mdm-Signature` is encoded.
package enum TestSignatureStyle: Sendable {
    /// Like real devices: BER indefinite lengths, no signed attributes; SHA-1 with the bare
    /// `rsaEncryption` signature algorithm for RSA keys, SHA-256 with `ecdsa-with-SHA256` for P-256.
    case device
    /// DER, SHA-256, signed attributes (contentType and messageDigest).
    case modern
}

/// A device's identity certificate and key: signs requests the way a device does and renders the
/// headers a TLS-terminating proxy forwards.
package struct TestDeviceIdentity: Sendable {
    package let certificate: Certificate
    package let der: [UInt8]
    /// SHA-256 of `der`: the value bound to the enrollment.
    package let sha256: [UInt8]
    package let certificatePEM: String
    /// CA certificates embedded in signatures after the device's own, to complete its chain.
    package let intermediates: [Certificate]
    let key: TestSigningKey
    /// The DER of every certificate a signature embeds.
    let embeddedCertificates: [UInt8]
    /// The DER of the SignerInfo's issuerAndSerialNumber, the same for every signature.
    let signerIdentifier: [UInt8]

    init(certificate: Certificate, key: TestSigningKey, intermediates: [Certificate]) throws {
        var serializer = DER.Serializer()
        try serializer.serialize(certificate)
        self.certificate = certificate
        self.der = serializer.serializedBytes
        for intermediate in intermediates {
            try serializer.serialize(intermediate)
        }
        self.embeddedCertificates = serializer.serializedBytes
        self.intermediates = intermediates
        self.sha256 = Array(SHA256.hash(data: der))
        self.certificatePEM = try TestCertificateAuthority.pemString(of: certificate)
        self.key = key

        var identifier = DER.Serializer()
        try identifier.appendConstructedNode(identifier: .sequence) { sequence in
            try sequence.serialize(certificate.issuer)
            sequence.appendPrimitiveNode(identifier: .integer) { $0.append(contentsOf: certificate.serialNumber.bytes) }
        }
        self.signerIdentifier = identifier.serializedBytes
    }

    /// The private key in PEM (PKCS#8 for P-256, PKCS#1 for RSA), for clients presenting the identity over TLS.
    package var privateKeyPEM: String {
        key.pemRepresentation
    }

    /// Base64 of a detached CMS SignedData over `body`, as a device sends in `Mdm-Signature`.
    package func mdmSignature(for body: [UInt8], style: TestSignatureStyle = .modern) throws -> String {
        let signedData =
            switch style {
            case .device: try deviceStyleSignedData(for: body)
            case .modern: try modernSignedData(for: body)
            }
        return Data(signedData).base64EncodedString()
    }

    /// RFC 9440 `Client-Cert` value: the DER as a structured-field byte sequence.
    package var rfc9440Header: String {
        ":" + Data(der).base64EncodedString() + ":"
    }

    /// The PEM percent-encoded as nginx's `$ssl_client_escaped_cert` renders it.
    package var escapedPEMHeader: String {
        certificatePEM.addingPercentEncoding(withAllowedCharacters: uriUnreserved) ?? certificatePEM
    }
}

private let uriUnreserved = CharacterSet(
    charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
)

/// The private key of a test identity.
struct TestSigningKey: Sendable {
    let kind: TestKeyKind
    let certificatePrivateKey: Certificate.PrivateKey
    let pemRepresentation: String

    init(kind: TestKeyKind) throws {
        self.kind = kind
        switch kind {
        case .rsa2048: certificatePrivateKey = Certificate.PrivateKey(try _RSA.Signing.PrivateKey(keySize: .bits2048))
        case .p256: certificatePrivateKey = Certificate.PrivateKey(P256.Signing.PrivateKey())
        }
        pemRepresentation = try certificatePrivateKey.serializeAsPEM().pemString + "\n"
    }

    var publicKey: Certificate.PublicKey {
        certificatePrivateKey.publicKey
    }

    var certificateSignatureAlgorithm: Certificate.SignatureAlgorithm {
        switch kind {
        case .rsa2048: .sha256WithRSAEncryption
        case .p256: .ecdsaWithSHA256
        }
    }

    /// The signature over `bytes`: PKCS#1 v1.5 for RSA, DER ECDSA-Sig-Value for P-256.
    func signature(for bytes: [UInt8], algorithm: Certificate.SignatureAlgorithm) throws -> [UInt8] {
        try certificatePrivateKey.sign(bytes: bytes, signatureAlgorithm: algorithm).rawRepresentation
    }
}
