import Crypto
import Foundation
import SwiftASN1
import X509

extension DetachedSignedData {
    /// Checks the signature over `body` with the signer's key: over the body itself, or, when signed
    /// attributes are present, over those attributes after checking their messageDigest against the body.
    func verifySignature(over body: [UInt8], publicKey: Certificate.PublicKey) throws(DeviceIdentityError) {
        let algorithm = try verificationAlgorithm()
        let isValid: Bool
        if let signedAttributes {
            let digest = try Self.digest(of: body, algorithm: digestAlgorithm)
            guard digest.elementsEqual(signedAttributes.messageDigest) else {
                throw .signatureMismatch
            }
            isValid = publicKey.isValidSignature(
                signature, for: signedAttributes.signedBytes, signatureAlgorithm: algorithm)
        } else {
            isValid = publicKey.isValidSignature(signature, for: body, signatureAlgorithm: algorithm)
        }
        guard isValid else {
            throw .signatureMismatch
        }
    }

    /// The signature algorithm to verify with. Devices name the key type alone (`rsaEncryption`), leaving
    /// the hash to the digest algorithm; others name the combination.
    private func verificationAlgorithm() throws(DeviceIdentityError) -> Certificate.SignatureAlgorithm {
        switch (signatureAlgorithm, digestAlgorithm) {
        case (CMSObjectIdentifiers.rsaEncryption, CMSObjectIdentifiers.sha1),
            (CMSObjectIdentifiers.sha1WithRSAEncryption, _):
            return .sha1WithRSAEncryption
        case (CMSObjectIdentifiers.rsaEncryption, CMSObjectIdentifiers.sha256),
            (CMSObjectIdentifiers.sha256WithRSAEncryption, _):
            return .sha256WithRSAEncryption
        case (CMSObjectIdentifiers.rsaEncryption, CMSObjectIdentifiers.sha384),
            (CMSObjectIdentifiers.sha384WithRSAEncryption, _):
            return .sha384WithRSAEncryption
        case (CMSObjectIdentifiers.rsaEncryption, CMSObjectIdentifiers.sha512),
            (CMSObjectIdentifiers.sha512WithRSAEncryption, _):
            return .sha512WithRSAEncryption
        case (CMSObjectIdentifiers.ecPublicKey, CMSObjectIdentifiers.sha256),
            (CMSObjectIdentifiers.ecdsaWithSHA256, _):
            return .ecdsaWithSHA256
        case (CMSObjectIdentifiers.ecPublicKey, CMSObjectIdentifiers.sha384),
            (CMSObjectIdentifiers.ecdsaWithSHA384, _):
            return .ecdsaWithSHA384
        case (CMSObjectIdentifiers.ecPublicKey, CMSObjectIdentifiers.sha512),
            (CMSObjectIdentifiers.ecdsaWithSHA512, _):
            return .ecdsaWithSHA512
        default:
            throw .malformedSignature(
                "unsupported signature algorithm \(signatureAlgorithm) with digest \(digestAlgorithm)"
            )
        }
    }

    private static func digest(
        of body: [UInt8],
        algorithm: ASN1ObjectIdentifier
    ) throws(DeviceIdentityError) -> [UInt8] {
        switch algorithm {
        case CMSObjectIdentifiers.sha1: Array(Insecure.SHA1.hash(data: body))
        case CMSObjectIdentifiers.sha256: Array(SHA256.hash(data: body))
        case CMSObjectIdentifiers.sha384: Array(SHA384.hash(data: body))
        case CMSObjectIdentifiers.sha512: Array(SHA512.hash(data: body))
        default: throw .malformedSignature("unsupported digest algorithm \(algorithm)")
        }
    }
}
