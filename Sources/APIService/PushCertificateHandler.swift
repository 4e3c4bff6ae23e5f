import Foundation
import Hummingbird
import MDMServerSupport
import MDMStorage
import SwiftASN1
import X509

/// An uploaded push certificate that failed the checks.
enum PushCertificateError: HTTPMappableError, Equatable {
    case missingCertificate
    case missingPrivateKey
    case encryptedPrivateKey
    case unreadable(String)
    case keyMismatch
    case missingTopic
    case notPushTopic(String)

    var status: HTTPResponse.Status { .badRequest }

    var reason: String {
        switch self {
        case .missingCertificate: "no PEM CERTIFICATE in the body"
        case .missingPrivateKey: "no PEM PRIVATE KEY in the body"
        case .encryptedPrivateKey: "the private key is encrypted; upload it unencrypted"
        case .unreadable(let detail): "cannot read the certificate or key: \(detail)"
        case .keyMismatch: "the private key does not belong to the certificate"
        case .missingTopic: "the certificate subject has no UID (topic)"
        case .notPushTopic(let topic): "topic \(topic) does not start with com.apple.mgmt"
        }
    }
}

/// The JSON `/v1/pushcert` answers with.
struct PushCertificateSummary: Encodable, Equatable, Sendable {
    var topic: String
    var notAfter: String

    enum CodingKeys: String, CodingKey {
        case topic
        case notAfter = "not_after"
    }

    init(_ record: PushCertificateRecord) {
        topic = record.topic
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        notAfter = formatter.string(from: record.notAfter)
    }
}

/// Push certificate upload and lookup (PROTOCOL.md §5).
struct PushCertificateHandler: Sendable {
    var store: any PushCertificateStore

    /// Subject UID: `0.9.2342.19200300.100.1.1`. Apple puts the push topic there.
    static let userIDAttribute: ASN1ObjectIdentifier = [0, 9, 2342, 19_200_300, 100, 1, 1]

    func upload(pem: String) async throws -> PushCertificateSummary {
        let record = try Self.parse(pem: pem)
        try await store.savePushCertificate(record)
        return PushCertificateSummary(record)
    }

    func fetch(topic: String) async throws -> PushCertificateSummary {
        guard let record = try await store.fetchPushCertificate(topic: topic) else {
            throw RequestFailure.notFound("no push certificate for topic \(topic)")
        }
        return PushCertificateSummary(record)
    }

    /// Splits the body into its certificate and key, checks they belong together and reads
    /// the topic.
    static func parse(pem: String) throws(PushCertificateError) -> PushCertificateRecord {
        let blocks = PEMBlock.all(in: pem)
        guard let certificateBlock = blocks.first(where: { $0.label == "CERTIFICATE" }) else {
            throw .missingCertificate
        }
        if blocks.contains(where: { $0.label == "ENCRYPTED PRIVATE KEY" }) { throw .encryptedPrivateKey }
        guard let keyBlock = blocks.first(where: { $0.label.hasSuffix("PRIVATE KEY") }) else {
            throw .missingPrivateKey
        }
        if keyBlock.text.contains("Proc-Type: 4,ENCRYPTED") { throw .encryptedPrivateKey }

        let certificate: Certificate
        let key: Certificate.PrivateKey
        do {
            certificate = try Certificate(pemEncoded: certificateBlock.text)
            key = try Certificate.PrivateKey(pemEncoded: keyBlock.text)
        } catch {
            throw .unreadable("\(error)")
        }
        guard key.publicKey == certificate.publicKey else { throw .keyMismatch }
        guard let topic = topic(of: certificate) else { throw .missingTopic }
        guard topic.hasPrefix("com.apple.mgmt") else { throw .notPushTopic(topic) }
        return PushCertificateRecord(
            topic: topic,
            certificatePEM: certificateBlock.text,
            privateKeyPEM: keyBlock.text,
            notAfter: certificate.notValidAfter
        )
    }

    static func topic(of certificate: Certificate) -> String? {
        for rdn in certificate.subject {
            for attribute in rdn where attribute.type == userIDAttribute {
                return String(describing: attribute.value)
            }
        }
        return nil
    }
}

/// One `-----BEGIN X-----…-----END X-----` block of a PEM text.
struct PEMBlock: Equatable {
    var label: String
    var text: String

    static func all(in pem: String) -> [PEMBlock] {
        var blocks: [PEMBlock] = []
        var current: (label: String, lines: [Substring])?
        for line in pem.split(whereSeparator: \.isNewline) {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if current == nil, trimmed.hasPrefix("-----BEGIN "), trimmed.hasSuffix("-----") {
                current = (String(trimmed.dropFirst(11).dropLast(5)), [line])
            } else if var block = current {
                block.lines.append(line)
                if trimmed == "-----END \(block.label)-----" {
                    blocks.append(PEMBlock(label: block.label, text: block.lines.joined(separator: "\n") + "\n"))
                    current = nil
                } else {
                    current = block
                }
            }
        }
        return blocks
    }
}
