import SwiftASN1
import X509

/// The parts of a detached CMS SignedData (RFC 5652 §5) that device identity needs.
///
/// Parsed with the BER parser because devices send indefinite lengths. swift-certificates' own
/// CMS support is SPI and refuses the plain `rsaEncryption` signature algorithm that devices use.
struct DetachedSignedData {
    enum SignerIdentifier {
        case issuerAndSerialNumber(issuer: DistinguishedName, serialNumber: Certificate.SerialNumber)
        case subjectKeyIdentifier(ArraySlice<UInt8>)
    }

    struct SignedAttributes {
        /// The value of the messageDigest attribute.
        var messageDigest: ArraySlice<UInt8>
        /// The DER encoding of the attributes as a SET: what the signature covers (RFC 5652 §5.4).
        var signedBytes: [UInt8]
    }

    /// The encodings of the embedded certificates, in order.
    var certificates: [ArraySlice<UInt8>]
    var signer: SignerIdentifier
    var digestAlgorithm: ASN1ObjectIdentifier
    var signedAttributes: SignedAttributes?
    var signatureAlgorithm: ASN1ObjectIdentifier
    var signature: ArraySlice<UInt8>
}

extension DetachedSignedData {
    init(berEncoded bytes: [UInt8]) throws(DeviceIdentityError) {
        do {
            self = try Self.parseContentInfo(BER.parse(bytes))
        } catch let error as SignedDataParseError {
            throw .malformedSignature(error.reason)
        } catch {
            throw .malformedSignature("invalid BER: \(error)")
        }
    }
}

private struct SignedDataParseError: Error {
    var reason: String

    init(_ reason: String) {
        self.reason = reason
    }
}

private let implicitTag0 = ASN1Identifier(tagWithNumber: 0, tagClass: .contextSpecific)
private let implicitTag1 = ASN1Identifier(tagWithNumber: 1, tagClass: .contextSpecific)

extension DetachedSignedData {
    private static func parseContentInfo(_ root: ASN1Node) throws -> Self {
        try BER.sequence(root, identifier: .sequence) { nodes in
            let contentType = try ASN1ObjectIdentifier(berEncoded: &nodes)
            guard contentType == CMSObjectIdentifiers.signedData else {
                throw SignedDataParseError("ContentInfo holds \(contentType), not SignedData")
            }
            return try BER.explicitlyTagged(&nodes, tagNumber: 0, tagClass: .contextSpecific) { node in
                try parseSignedData(node)
            }
        }
    }

    private static func parseSignedData(_ node: ASN1Node) throws -> Self {
        try BER.sequence(node, identifier: .sequence) { nodes in
            _ = try Int(berEncoded: &nodes)
            let digestAlgorithms = try nextNode(&nodes, "digestAlgorithms")
            guard digestAlgorithms.identifier == .set else {
                throw SignedDataParseError("digestAlgorithms is not a SET")
            }
            try parseEncapsulatedContentInfo(nextNode(&nodes, "encapContentInfo"))

            var next = try nextNode(&nodes, "signerInfos")
            var certificates: [ArraySlice<UInt8>] = []
            if next.identifier == implicitTag0 {
                certificates = try parseCertificateSet(next)
                next = try nextNode(&nodes, "signerInfos")
            }
            if next.identifier == implicitTag1 {
                // Revocation information is not used: validity comes from the configured CA.
                next = try nextNode(&nodes, "signerInfos")
            }
            guard next.identifier == .set, case .constructed(let signerInfos) = next.content else {
                throw SignedDataParseError("signerInfos is not a SET")
            }
            var iterator = signerInfos.makeIterator()
            guard let signerInfo = iterator.next(), iterator.next() == nil else {
                throw SignedDataParseError("expected exactly one SignerInfo")
            }
            return try parseSignerInfo(signerInfo, certificates: certificates)
        }
    }

    private static func parseEncapsulatedContentInfo(_ node: ASN1Node) throws {
        try BER.sequence(node, identifier: .sequence) { nodes in
            _ = try ASN1ObjectIdentifier(berEncoded: &nodes)
            if nodes.next() != nil {
                throw SignedDataParseError("the signed content is embedded; expected a detached signature")
            }
        }
    }

    private static func parseCertificateSet(_ node: ASN1Node) throws -> [ArraySlice<UInt8>] {
        guard case .constructed(let choices) = node.content else {
            throw SignedDataParseError("certificates is not constructed")
        }
        // Other CertificateChoices (attribute certificates and the like) are tagged; only plain
        // X.509 certificates (a SEQUENCE) can identify a device.
        return choices.filter { $0.identifier == .sequence }.map(\.encodedBytes)
    }

    private static func parseSignerInfo(_ node: ASN1Node, certificates: [ArraySlice<UInt8>]) throws -> Self {
        try BER.sequence(node, identifier: .sequence) { nodes in
            _ = try Int(berEncoded: &nodes)
            let signer = try parseSignerIdentifier(nextNode(&nodes, "sid"))
            let digestAlgorithm = try parseAlgorithmIdentifier(nextNode(&nodes, "digestAlgorithm"))

            var next = try nextNode(&nodes, "signatureAlgorithm")
            var signedAttributes: SignedAttributes?
            if next.identifier == implicitTag0 {
                signedAttributes = try parseSignedAttributes(next)
                next = try nextNode(&nodes, "signatureAlgorithm")
            }
            let signatureAlgorithm = try parseAlgorithmIdentifier(next)
            let signature = try ASN1OctetString(berEncoded: &nodes).bytes
            // Unsigned attributes (countersignatures and the like) carry nothing identity needs.
            while nodes.next() != nil {}

            return Self(
                certificates: certificates,
                signer: signer,
                digestAlgorithm: digestAlgorithm,
                signedAttributes: signedAttributes,
                signatureAlgorithm: signatureAlgorithm,
                signature: signature
            )
        }
    }

    private static func parseSignerIdentifier(_ node: ASN1Node) throws -> SignerIdentifier {
        switch node.identifier {
        case .sequence:
            return try BER.sequence(node, identifier: .sequence) { nodes in
                let issuer = try DistinguishedName(derEncoded: nextNode(&nodes, "issuer"))
                let serialNode = try nextNode(&nodes, "serialNumber")
                guard serialNode.identifier == .integer, case .primitive(let serial) = serialNode.content else {
                    throw SignedDataParseError("issuerAndSerialNumber has no serial number")
                }
                return .issuerAndSerialNumber(issuer: issuer, serialNumber: Certificate.SerialNumber(bytes: serial))
            }
        case implicitTag0:
            let keyIdentifier = try ASN1OctetString(berEncoded: node, withIdentifier: implicitTag0)
            return .subjectKeyIdentifier(keyIdentifier.bytes)
        default:
            throw SignedDataParseError("unknown SignerIdentifier \(node.identifier)")
        }
    }

    private static func parseAlgorithmIdentifier(_ node: ASN1Node) throws -> ASN1ObjectIdentifier {
        try BER.sequence(node, identifier: .sequence) { nodes in
            let algorithm = try ASN1ObjectIdentifier(berEncoded: &nodes)
            // Parameters are NULL or absent for every supported algorithm.
            while nodes.next() != nil {}
            return algorithm
        }
    }

    private static func parseSignedAttributes(_ node: ASN1Node) throws -> SignedAttributes {
        guard case .constructed(let attributes) = node.content else {
            throw SignedDataParseError("signedAttrs is not constructed")
        }
        var messageDigest: ArraySlice<UInt8>?
        for attribute in attributes {
            let digest = try BER.sequence(attribute, identifier: .sequence) { nodes -> ArraySlice<UInt8>? in
                let type = try ASN1ObjectIdentifier(berEncoded: &nodes)
                let values = try nextNode(&nodes, "attrValues")
                guard type == CMSObjectIdentifiers.messageDigestAttribute else {
                    return nil
                }
                return try BER.set(values, identifier: .set) { valueNodes in
                    let value = try ASN1OctetString(berEncoded: &valueNodes).bytes
                    guard valueNodes.next() == nil else {
                        throw SignedDataParseError("messageDigest has more than one value")
                    }
                    return value
                }
            }
            if let digest {
                guard messageDigest == nil else {
                    throw SignedDataParseError("signedAttrs holds more than one messageDigest")
                }
                messageDigest = digest
            }
        }
        guard let messageDigest else {
            throw SignedDataParseError("signedAttrs lacks the messageDigest attribute")
        }

        // The signature covers the DER encoding with the SET tag, not the [0] IMPLICIT tag that
        // was sent; re-encoding also turns BER indefinite lengths into definite ones.
        var serializer = DER.Serializer()
        serializer.appendConstructedNode(identifier: .set) { content in
            for attribute in attributes {
                content.serialize(attribute)
            }
        }
        return SignedAttributes(messageDigest: messageDigest, signedBytes: serializer.serializedBytes)
    }

    private static func nextNode(_ nodes: inout ASN1NodeCollection.Iterator, _ field: String) throws -> ASN1Node {
        guard let node = nodes.next() else {
            throw SignedDataParseError("SignedData ends before \(field)")
        }
        return node
    }
}
