import Crypto
import Foundation
import NIOSSL
import SwiftASN1
import X509

/// The mock APNs server's own TLS identity: a throwaway CA and a certificate for 127.0.0.1 and localhost.
struct MockAPNsServerIdentity {
    let trustRoot: Certificate
    let trustRootPEM: String
    let serverCertificate: NIOSSLCertificate
    let serverKey: NIOSSLPrivateKey

    static func make() throws -> MockAPNsServerIdentity {
        let caKey = Certificate.PrivateKey(P256.Signing.PrivateKey())
        let caName = try DistinguishedName {
            CommonName("SwiftMDM Mock APNs CA")
            OrganizationName("SwiftMDM tests")
        }
        let now = Date()
        let ca = try Certificate(
            version: .v3,
            serialNumber: Certificate.SerialNumber(),
            publicKey: caKey.publicKey,
            notValidBefore: now - 3600,
            notValidAfter: now + 86400 * 365,
            issuer: caName,
            subject: caName,
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                Critical(KeyUsage(keyCertSign: true, cRLSign: true))
                SubjectKeyIdentifier(hash: caKey.publicKey)
            },
            issuerPrivateKey: caKey
        )
        let serverKey = Certificate.PrivateKey(P256.Signing.PrivateKey())
        let server = try Certificate(
            version: .v3,
            serialNumber: Certificate.SerialNumber(),
            publicKey: serverKey.publicKey,
            notValidBefore: now - 3600,
            notValidAfter: now + 86400 * 365,
            issuer: caName,
            subject: DistinguishedName { CommonName("127.0.0.1") },
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true))
                try ExtendedKeyUsage([.serverAuth])
                SubjectAlternativeNames([
                    .ipAddress(ASN1OctetString(contentBytes: [127, 0, 0, 1])),
                    .dnsName("localhost"),
                ])
            },
            issuerPrivateKey: caKey
        )
        return MockAPNsServerIdentity(
            trustRoot: ca,
            trustRootPEM: try TestCertificateAuthority.pemString(of: ca),
            serverCertificate: try NIOSSLCertificate(certificate: server),
            serverKey: try NIOSSLPrivateKey(bytes: Array(serverKey.serializeAsPEM().pemString.utf8), format: .pem)
        )
    }
}

extension NIOSSLCertificate {
    /// The same certificate, for NIOSSL's trust and chain settings.
    convenience init(certificate: Certificate) throws {
        var serializer = DER.Serializer()
        try serializer.serialize(certificate)
        try self.init(bytes: serializer.serializedBytes, format: .der)
    }
}
