import Crypto
import MDMIdentity
import SwiftASN1
import X509

// Detached CMS SignedData (RFC 5652) as devices and other signers write it.

private let contextTag0 = ASN1Identifier(tagWithNumber: 0, tagClass: .contextSpecific)

/// An AlgorithmIdentifier; RSA and SHA-1 identifiers conventionally carry NULL parameters.
private struct AlgorithmIdentifier {
    var algorithm: ASN1ObjectIdentifier
    var hasNullParameters: Bool

    func serialize(into serializer: inout DER.Serializer) throws {
        try serializer.appendConstructedNode(identifier: .sequence) { sequence in
            try sequence.serialize(algorithm)
            if hasNullParameters {
                try sequence.serialize(ASN1Null())
            }
        }
    }
}

private func derEncoded(_ build: (inout DER.Serializer) throws -> Void) rethrows -> [UInt8] {
    var serializer = DER.Serializer()
    try build(&serializer)
    return serializer.serializedBytes
}

extension TestDeviceIdentity {
    /// BER with indefinite lengths around the outer structures, exactly as devices nest them.
    func deviceStyleSignedData(for body: [UInt8]) throws -> [UInt8] {
        let digestAlgorithm: AlgorithmIdentifier
        let signatureAlgorithm: AlgorithmIdentifier
        let signature: [UInt8]
        switch key.kind {
        case .rsa2048:
            digestAlgorithm = AlgorithmIdentifier(algorithm: CMSObjectIdentifiers.sha1, hasNullParameters: true)
            signatureAlgorithm = AlgorithmIdentifier(
                algorithm: CMSObjectIdentifiers.rsaEncryption,
                hasNullParameters: true
            )
            signature = try key.signature(for: body, algorithm: .sha1WithRSAEncryption)
        case .p256:
            digestAlgorithm = AlgorithmIdentifier(algorithm: CMSObjectIdentifiers.sha256, hasNullParameters: false)
            signatureAlgorithm = AlgorithmIdentifier(
                algorithm: CMSObjectIdentifiers.ecdsaWithSHA256,
                hasNullParameters: false
            )
            signature = try key.signature(for: body, algorithm: .ecdsaWithSHA256)
        }

        let indefiniteSequence: [UInt8] = [0x30, 0x80]
        let endOfContents: [UInt8] = [0x00, 0x00]
        var encoded = indefiniteSequence
        encoded += try derEncoded { try $0.serialize(CMSObjectIdentifiers.signedData) }
        encoded += [0xA0, 0x80] + indefiniteSequence
        encoded += try derEncoded { try $0.serialize(1) }
        encoded += try derEncoded { serializer in
            try serializer.appendConstructedNode(identifier: .set) { try digestAlgorithm.serialize(into: &$0) }
        }
        encoded += indefiniteSequence
        encoded += try derEncoded { try $0.serialize(CMSObjectIdentifiers.data) }
        encoded += endOfContents
        encoded += derEncoded { serializer in
            serializer.appendConstructedNode(identifier: contextTag0) { $0.serializeRawBytes(embeddedCertificates) }
        }
        encoded += try derEncoded { serializer in
            try serializer.appendConstructedNode(identifier: .set) { set in
                try serializeSignerInfo(
                    into: &set,
                    digestAlgorithm: digestAlgorithm,
                    signedAttributes: nil,
                    signatureAlgorithm: signatureAlgorithm,
                    signature: signature
                )
            }
        }
        encoded += endOfContents + endOfContents + endOfContents
        return encoded
    }

    /// DER, SHA-256 and signed attributes, as OpenSSL and most libraries write it.
    func modernSignedData(for body: [UInt8]) throws -> [UInt8] {
        let digestAlgorithm = AlgorithmIdentifier(algorithm: CMSObjectIdentifiers.sha256, hasNullParameters: false)
        let signedAttributes = try signedAttributesSet(messageDigest: Array(SHA256.hash(data: body)))
        let signatureAlgorithm: AlgorithmIdentifier
        let signature: [UInt8]
        switch key.kind {
        case .rsa2048:
            signatureAlgorithm = AlgorithmIdentifier(
                algorithm: CMSObjectIdentifiers.sha256WithRSAEncryption,
                hasNullParameters: true
            )
            signature = try key.signature(for: signedAttributes, algorithm: .sha256WithRSAEncryption)
        case .p256:
            signatureAlgorithm = AlgorithmIdentifier(
                algorithm: CMSObjectIdentifiers.ecdsaWithSHA256,
                hasNullParameters: false
            )
            signature = try key.signature(for: signedAttributes, algorithm: .ecdsaWithSHA256)
        }

        return try derEncoded { serializer in
            try serializer.appendConstructedNode(identifier: .sequence) { contentInfo in
                try contentInfo.serialize(CMSObjectIdentifiers.signedData)
                try contentInfo.appendConstructedNode(identifier: contextTag0) { explicit in
                    try explicit.appendConstructedNode(identifier: .sequence) { signedData in
                        try signedData.serialize(1)
                        try signedData.appendConstructedNode(identifier: .set) {
                            try digestAlgorithm.serialize(into: &$0)
                        }
                        try signedData.appendConstructedNode(identifier: .sequence) {
                            try $0.serialize(CMSObjectIdentifiers.data)
                        }
                        signedData.appendConstructedNode(identifier: contextTag0) {
                            $0.serializeRawBytes(embeddedCertificates)
                        }
                        try signedData.appendConstructedNode(identifier: .set) { set in
                            try serializeSignerInfo(
                                into: &set,
                                digestAlgorithm: digestAlgorithm,
                                signedAttributes: signedAttributes,
                                signatureAlgorithm: signatureAlgorithm,
                                signature: signature
                            )
                        }
                    }
                }
            }
        }
    }

    /// The DER of the signed attributes as a SET, the form the signature covers.
    private func signedAttributesSet(messageDigest: [UInt8]) throws -> [UInt8] {
        let contentType = try derEncoded { serializer in
            try serializer.appendConstructedNode(identifier: .sequence) { attribute in
                try attribute.serialize(CMSObjectIdentifiers.contentTypeAttribute)
                try attribute.appendConstructedNode(identifier: .set) { try $0.serialize(CMSObjectIdentifiers.data) }
            }
        }
        let digest = try derEncoded { serializer in
            try serializer.appendConstructedNode(identifier: .sequence) { attribute in
                try attribute.serialize(CMSObjectIdentifiers.messageDigestAttribute)
                try attribute.appendConstructedNode(identifier: .set) {
                    try $0.serialize(ASN1OctetString(contentBytes: messageDigest[...]))
                }
            }
        }
        // DER orders SET OF members by their encodings.
        let members = [contentType, digest].sorted { $0.lexicographicallyPrecedes($1) }
        return derEncoded { serializer in
            serializer.appendConstructedNode(identifier: .set) { set in
                for member in members {
                    set.serializeRawBytes(member)
                }
            }
        }
    }

    private func serializeSignerInfo(
        into serializer: inout DER.Serializer,
        digestAlgorithm: AlgorithmIdentifier,
        signedAttributes: [UInt8]?,
        signatureAlgorithm: AlgorithmIdentifier,
        signature: [UInt8]
    ) throws {
        try serializer.appendConstructedNode(identifier: .sequence) { signerInfo in
            try signerInfo.serialize(1)
            signerInfo.serializeRawBytes(signerIdentifier)
            try digestAlgorithm.serialize(into: &signerInfo)
            if var signedAttributes {
                // Sent as [0] IMPLICIT; only the tag differs from the signed SET encoding.
                signedAttributes[0] = 0xA0
                signerInfo.serializeRawBytes(signedAttributes)
            }
            try signatureAlgorithm.serialize(into: &signerInfo)
            try signerInfo.serialize(ASN1OctetString(contentBytes: signature[...]))
        }
    }
}
