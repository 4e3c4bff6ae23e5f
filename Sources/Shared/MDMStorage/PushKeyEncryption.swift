import Crypto
import Foundation

/// Why a push-key encryption key or a sealed private key cannot be used.
package enum PushKeyEncryptionError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The key is not base64 of exactly 32 bytes.
    case invalidKey(String)
    /// The envelope is cut short or names a format version this build does not know.
    case malformedEnvelope
    /// Authentication failed: another key, another topic, or altered bytes.
    case authenticationFailed

    package var description: String {
        switch self {
        case .invalidKey(let detail): detail
        case .malformedEnvelope: "the sealed private key is truncated or of an unknown format version"
        case .authenticationFailed: "the sealed private key does not open with this key for this topic"
        }
    }
}

/// The key that seals push-certificate private keys (`MDM_PUSH_KEY_ENCRYPTION_KEY`).
///
/// `@unchecked Sendable`: `SymmetricKey` is immutable once made, but swift-crypto 3 does not declare it
/// `Sendable`, and configurations holding the key cross tasks.
package struct PushKeyEncryptionKey: @unchecked Sendable {
    package let symmetricKey: SymmetricKey

    package init(_ symmetricKey: SymmetricKey) {
        self.symmetricKey = symmetricKey
    }

    /// Reads a key given as base64 of 32 bytes.
    package init(base64: String) throws(PushKeyEncryptionError) {
        self.init(try PushKeyEncryption.key(base64: base64))
    }
}

/// Seals push-certificate private keys at rest with AES-256-GCM.
///
/// Envelope, version 1: `"SMDMPK"` · `0x01` · 12-byte nonce · ciphertext · 16-byte tag. The topic is the
/// authenticated data, so a sealed key copied onto another topic's row does not open. A stored value that
/// does not start with the magic is a plain PEM from before encryption was turned on (PEM starts with `-`).
package enum PushKeyEncryption {
    package static let keyByteCount = 32
    static let magic: [UInt8] = Array("SMDMPK".utf8)
    static let version: UInt8 = 1
    static let nonceByteCount = 12
    static let tagByteCount = 16

    /// Reads a key given as base64 of 32 bytes.
    package static func key(base64: String) throws(PushKeyEncryptionError) -> SymmetricKey {
        let trimmed = base64.trimmingCharacters(in: .whitespacesAndNewlines)
        guard let bytes = Data(base64Encoded: trimmed) else {
            throw .invalidKey("not base64")
        }
        guard bytes.count == keyByteCount else {
            throw .invalidKey("decodes to \(bytes.count) bytes; need \(keyByteCount) (e.g. `openssl rand -base64 32`)")
        }
        return SymmetricKey(data: bytes)
    }

    /// Whether `stored` is a sealed envelope (of any version) rather than a plain PEM.
    package static func isSealed(_ stored: Data) -> Bool {
        stored.starts(with: magic)
    }

    package static func seal(_ plaintext: Data, topic: String, key: SymmetricKey) throws -> Data {
        let box = try AES.GCM.seal(plaintext, using: key, nonce: AES.GCM.Nonce(), authenticating: Data(topic.utf8))
        var envelope = Data(magic)
        envelope.append(version)
        envelope.append(contentsOf: box.nonce)
        envelope.append(box.ciphertext)
        envelope.append(box.tag)
        return envelope
    }

    package static func open(_ envelope: Data, topic: String, key: SymmetricKey) throws(PushKeyEncryptionError) -> Data
    {
        let bytes = [UInt8](envelope)
        let header = magic.count + 1
        guard
            bytes.starts(with: magic),
            bytes.count >= header + nonceByteCount + tagByteCount,
            bytes[magic.count] == version
        else {
            throw .malformedEnvelope
        }
        let nonceEnd = header + nonceByteCount
        let tagStart = bytes.count - tagByteCount
        do {
            let box = try AES.GCM.SealedBox(
                nonce: AES.GCM.Nonce(data: bytes[header..<nonceEnd]),
                ciphertext: bytes[nonceEnd..<tagStart],
                tag: bytes[tagStart...]
            )
            return try AES.GCM.open(box, using: key, authenticating: Data(topic.utf8))
        } catch {
            throw .authenticationFailed
        }
    }
}
