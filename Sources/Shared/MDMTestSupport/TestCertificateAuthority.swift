import Crypto
import Foundation
import SwiftASN1
import X509
import _CryptoExtras

/// The key types test identities use: RSA like real devices, P-256 where speed matters.
package enum TestKeyKind: Sendable {
    case rsa2048
    case p256
}

/// Why a test identity could not be made or used.
package enum TestIdentityError: Error, Sendable, Equatable {
    case noPrivateKeyInPEM
    case privateKeyDoesNotMatchCertificate
    case unsupportedKey(String)
}

/// A CA that issues device identity certificates, standing in for the SCEP CA of a real deployment.
package struct TestCertificateAuthority: Sendable {
    package let certificate: Certificate
    package let certificatePEM: String
    /// What a device presents besides its own certificate to chain to the root: this CA's certificate
    /// and its issuers' up to, not including, the root. Empty for a root CA.
    package let intermediates: [Certificate]
    private let privateKey: Certificate.PrivateKey
    private let signatureAlgorithm: Certificate.SignatureAlgorithm

    /// Creates a self-signed CA with a fresh key, valid from an hour ago for ten years.
    package static func make(
        commonName: String = "SwiftMDM Test CA",
        keyKind: TestKeyKind = .p256
    ) throws -> TestCertificateAuthority {
        let key = try TestSigningKey(kind: keyKind)
        let name = try DistinguishedName {
            CommonName(commonName)
            OrganizationName("SwiftMDM tests")
        }
        let now = Date()
        let certificate = try Certificate(
            version: .v3,
            serialNumber: Certificate.SerialNumber(),
            publicKey: key.publicKey,
            notValidBefore: now - 3600,
            notValidAfter: now + 86400 * 3650,
            issuer: name,
            subject: name,
            signatureAlgorithm: key.certificateSignatureAlgorithm,
            extensions: Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: nil))
                Critical(KeyUsage(keyCertSign: true, cRLSign: true))
                SubjectKeyIdentifier(hash: key.publicKey)
            },
            issuerPrivateKey: key.certificatePrivateKey
        )
        return try TestCertificateAuthority(certificate: certificate, privateKey: key.certificatePrivateKey)
    }

    /// Loads an existing CA: RSA or EC, the key as PKCS#8 (`PRIVATE KEY`) or traditional
    /// (`RSA PRIVATE KEY`, `EC PRIVATE KEY`, possibly after an `EC PARAMETERS` block).
    package init(certificatePEM: String, privateKeyPEM: String) throws {
        let documents = try PEMDocument.parseMultiple(pemString: privateKeyPEM)
        guard let keyDocument = documents.first(where: { $0.discriminator.hasSuffix("PRIVATE KEY") }) else {
            throw TestIdentityError.noPrivateKeyInPEM
        }
        try self.init(
            certificate: Certificate(pemEncoded: certificatePEM),
            privateKey: Certificate.PrivateKey(pemDocument: keyDocument)
        )
    }

    private init(
        certificate: Certificate,
        privateKey: Certificate.PrivateKey,
        intermediates: [Certificate] = []
    ) throws {
        guard privateKey.publicKey == certificate.publicKey else {
            throw TestIdentityError.privateKeyDoesNotMatchCertificate
        }
        self.certificate = certificate
        self.intermediates = intermediates
        self.certificatePEM = try Self.pemString(of: certificate)
        self.privateKey = privateKey
        self.signatureAlgorithm = try Self.signatureAlgorithm(for: privateKey.publicKey)
    }

    /// Issues a subordinate CA; identities it issues embed it (and any CAs between it and the root)
    /// in their signatures.
    package func issueIntermediate(
        commonName: String,
        keyKind: TestKeyKind = .p256
    ) throws -> TestCertificateAuthority {
        let key = try TestSigningKey(kind: keyKind)
        var extensions = try Certificate.Extensions {
            Critical(BasicConstraints.isCertificateAuthority(maxPathLength: nil))
            Critical(KeyUsage(keyCertSign: true, cRLSign: true))
            SubjectKeyIdentifier(hash: key.publicKey)
        }
        if let authorityKeyIdentifier = try certificate.extensions.subjectKeyIdentifier?.keyIdentifier {
            try extensions.append(
                Certificate.Extension(AuthorityKeyIdentifier(keyIdentifier: authorityKeyIdentifier), critical: false)
            )
        }
        let now = Date()
        let intermediate = try Certificate(
            version: .v3,
            serialNumber: Certificate.SerialNumber(),
            publicKey: key.publicKey,
            notValidBefore: now - 3600,
            notValidAfter: now + 86400 * 3650,
            issuer: certificate.subject,
            subject: DistinguishedName {
                CommonName(commonName)
                OrganizationName("SwiftMDM tests")
            },
            signatureAlgorithm: signatureAlgorithm,
            extensions: extensions,
            issuerPrivateKey: privateKey
        )
        return try TestCertificateAuthority(
            certificate: intermediate,
            privateKey: key.certificatePrivateKey,
            intermediates: [intermediate] + intermediates
        )
    }

    /// Issues a device identity certificate shaped like one from an MDM SCEP profile: digitalSignature
    /// key usage and, unless `extendedKeyUsage` is nil, an extendedKeyUsage extension.
    package func issueDeviceIdentity(
        commonName: String,
        keyKind: TestKeyKind = .rsa2048,
        notValidBefore: Date = Date() - 3600,
        notValidAfter: Date = Date() + 86400 * 365,
        extendedKeyUsage: [ExtendedKeyUsage.Usage]? = [.clientAuth]
    ) throws -> TestDeviceIdentity {
        try issueLeaf(
            subject: DistinguishedName { CommonName(commonName) },
            keyKind: keyKind,
            notValidBefore: notValidBefore,
            notValidAfter: notValidAfter,
            extendedKeyUsage: extendedKeyUsage
        )
    }

    /// Issues an APNs push certificate shaped like Apple's MDM push certificates: the topic as the subject's
    /// UID (`0.9.2342.19200300.100.1.1`), an `APSP:` common name, clientAuth.
    package func issuePushCertificate(
        topic: String,
        keyKind: TestKeyKind = .p256,
        notValidAfter: Date = Date() + 86400 * 365
    ) throws -> TestDeviceIdentity {
        let userID: ASN1ObjectIdentifier = [0, 9, 2342, 19_200_300, 100, 1, 1]
        let subject = try DistinguishedName([
            RelativeDistinguishedName.Attribute(type: userID, utf8String: topic),
            RelativeDistinguishedName.Attribute(
                type: .RDNAttributeType.commonName,
                utf8String: "APSP:\(UUID().uuidString.lowercased())"
            ),
        ])
        return try issueLeaf(
            subject: subject,
            keyKind: keyKind,
            notValidBefore: Date() - 3600,
            notValidAfter: notValidAfter,
            extendedKeyUsage: [.clientAuth]
        )
    }

    private func issueLeaf(
        subject: DistinguishedName,
        keyKind: TestKeyKind,
        notValidBefore: Date,
        notValidAfter: Date,
        extendedKeyUsage: [ExtendedKeyUsage.Usage]?
    ) throws -> TestDeviceIdentity {
        let key = try TestSigningKey(kind: keyKind)
        var extensions = Certificate.Extensions()
        try extensions.append(Certificate.Extension(KeyUsage(digitalSignature: true), critical: true))
        if let extendedKeyUsage {
            try extensions.append(Certificate.Extension(ExtendedKeyUsage(extendedKeyUsage), critical: false))
        }
        try extensions.append(Certificate.Extension(SubjectKeyIdentifier(hash: key.publicKey), critical: false))
        if let authorityKeyIdentifier = try certificate.extensions.subjectKeyIdentifier?.keyIdentifier {
            try extensions.append(
                Certificate.Extension(AuthorityKeyIdentifier(keyIdentifier: authorityKeyIdentifier), critical: false)
            )
        }
        let deviceCertificate = try Certificate(
            version: .v3,
            serialNumber: Certificate.SerialNumber(),
            publicKey: key.publicKey,
            notValidBefore: notValidBefore,
            notValidAfter: notValidAfter,
            issuer: certificate.subject,
            subject: subject,
            signatureAlgorithm: signatureAlgorithm,
            extensions: extensions,
            issuerPrivateKey: privateKey
        )
        return try TestDeviceIdentity(certificate: deviceCertificate, key: key, intermediates: intermediates)
    }

    private static func signatureAlgorithm(
        for publicKey: Certificate.PublicKey
    ) throws -> Certificate.SignatureAlgorithm {
        if P256.Signing.PublicKey(publicKey) != nil {
            return .ecdsaWithSHA256
        }
        if P384.Signing.PublicKey(publicKey) != nil {
            return .ecdsaWithSHA384
        }
        if P521.Signing.PublicKey(publicKey) != nil {
            return .ecdsaWithSHA512
        }
        if _RSA.Signing.PublicKey(publicKey) != nil {
            return .sha256WithRSAEncryption
        }
        throw TestIdentityError.unsupportedKey("the CA key is neither RSA nor ECDSA")
    }

    static func pemString(of certificate: Certificate) throws -> String {
        var serializer = DER.Serializer()
        try serializer.serialize(certificate)
        return PEMDocument(type: "CERTIFICATE", derBytes: serializer.serializedBytes).pemString + "\n"
    }
}
