import Crypto
import Foundation
import MDMStorage
import MDMTestSupport
import PostgresNIO
import Testing

@Suite(.enabled(if: TestDatabase.isEnabled, "set MDM_TEST_DATABASE_URL or run deploy/local/test"))
struct PushCertificateStoreTests {
    static let topic = "com.apple.mgmt.External.test"

    static func record(_ label: String, topic: String = topic) -> PushCertificateRecord {
        PushCertificateRecord(
            topic: topic,
            certificatePEM: "-----BEGIN CERTIFICATE-----\n\(label)\n-----END CERTIFICATE-----\n",
            privateKeyPEM: "-----BEGIN PRIVATE KEY-----\n\(label)-key\n-----END PRIVATE KEY-----\n",
            notAfter: Date(timeIntervalSince1970: 1_900_000_000)
        )
    }

    @Test
    func pushCertificateIsSavedReplacedAndFetched() async throws {
        try await TestDatabase.withFreshClient { client in
            let store = PostgresPushCertificateStore(client: client, logger: TestDatabase.quietLogger)
            #expect(try await store.fetchPushCertificate(topic: Self.topic) == nil)

            let first = Self.record("first")
            try await store.savePushCertificate(first)
            #expect(try await store.fetchPushCertificate(topic: Self.topic) == first)

            var renewed = Self.record("renewed")
            renewed.notAfter = Date(timeIntervalSince1970: 1_950_000_000)
            try await store.savePushCertificate(renewed)
            #expect(try await store.fetchPushCertificate(topic: Self.topic) == renewed)
            #expect(try await store.fetchPushCertificate(topic: "com.apple.mgmt.other") == nil)
        }
    }

    @Test
    func privateKeyIsStoredSealedAndOpensWithTheKey() async throws {
        try await TestDatabase.withFreshClient { client in
            let key = SymmetricKey(size: .bits256)
            let store = PostgresPushCertificateStore(
                client: client, logger: TestDatabase.quietLogger, keyEncryptionKey: key)
            let record = Self.record("sealed")

            try await store.savePushCertificate(record)

            let stored = try #require(try await Self.storedPrivateKey(client, topic: Self.topic))
            #expect(PushKeyEncryption.isSealed(stored))
            #expect(stored.range(of: Data("sealed-key".utf8)) == nil)
            #expect(stored.range(of: Data("PRIVATE KEY".utf8)) == nil)
            #expect(try await store.fetchPushCertificate(topic: Self.topic) == record)
        }
    }

    @Test
    func plainRowsFromBeforeEncryptionStillLoadAndAreSealedOnTheNextSave() async throws {
        try await TestDatabase.withFreshClient { client in
            let plain = PostgresPushCertificateStore(client: client, logger: TestDatabase.quietLogger)
            let record = Self.record("legacy")
            try await plain.savePushCertificate(record)

            let sealing = PostgresPushCertificateStore(
                client: client, logger: TestDatabase.quietLogger, keyEncryptionKey: SymmetricKey(size: .bits256))
            #expect(try await sealing.fetchPushCertificate(topic: Self.topic) == record)

            try await sealing.savePushCertificate(record)
            let stored = try #require(try await Self.storedPrivateKey(client, topic: Self.topic))
            #expect(PushKeyEncryption.isSealed(stored))
            #expect(try await sealing.fetchPushCertificate(topic: Self.topic) == record)
        }
    }

    @Test
    func sealedKeyWithoutAKeyEncryptionKeyIsAnErrorNamingTheTopic() async throws {
        try await TestDatabase.withFreshClient { client in
            let sealing = PostgresPushCertificateStore(
                client: client, logger: TestDatabase.quietLogger, keyEncryptionKey: SymmetricKey(size: .bits256))
            try await sealing.savePushCertificate(Self.record("sealed"))

            let plain = PostgresPushCertificateStore(client: client, logger: TestDatabase.quietLogger)
            await #expect(throws: StorageError.pushKeyEncrypted(topic: Self.topic)) {
                try await plain.fetchPushCertificate(topic: Self.topic)
            }
        }
    }

    @Test
    func sealedKeyWithAnotherKeyEncryptionKeyIsAnErrorNamingTheTopic() async throws {
        try await TestDatabase.withFreshClient { client in
            let sealing = PostgresPushCertificateStore(
                client: client, logger: TestDatabase.quietLogger, keyEncryptionKey: SymmetricKey(size: .bits256))
            try await sealing.savePushCertificate(Self.record("sealed"))

            let otherKey = PostgresPushCertificateStore(
                client: client, logger: TestDatabase.quietLogger, keyEncryptionKey: SymmetricKey(size: .bits256))
            await #expect(throws: StorageError.pushKeyUndecryptable(topic: Self.topic)) {
                try await otherKey.fetchPushCertificate(topic: Self.topic)
            }
        }
    }

    @Test
    func sealedKeyCopiedToAnotherTopicDoesNotOpen() async throws {
        try await TestDatabase.withFreshClient { client in
            let store = PostgresPushCertificateStore(
                client: client, logger: TestDatabase.quietLogger, keyEncryptionKey: SymmetricKey(size: .bits256))
            let other = "com.apple.mgmt.External.other"
            try await store.savePushCertificate(Self.record("mine"))
            try await store.savePushCertificate(Self.record("theirs", topic: other))

            try await client.query(
                """
                UPDATE push_certificates SET private_key = (
                    SELECT private_key FROM push_certificates WHERE topic = \(Self.topic)
                ) WHERE topic = \(other)
                """,
                logger: TestDatabase.quietLogger
            )

            await #expect(throws: StorageError.pushKeyUndecryptable(topic: other)) {
                try await store.fetchPushCertificate(topic: other)
            }
        }
    }

    private static func storedPrivateKey(_ client: PostgresClient, topic: String) async throws -> Data? {
        let rows = try await client.query(
            "SELECT private_key FROM push_certificates WHERE topic = \(topic)",
            logger: TestDatabase.quietLogger
        )
        for try await privateKey in rows.decode(Data.self) {
            return privateKey
        }
        return nil
    }
}

@Suite("Push key envelope")
struct PushKeyEncryptionTests {
    let key = SymmetricKey(size: .bits256)
    static let plaintext = Data("-----BEGIN PRIVATE KEY-----\nkey\n-----END PRIVATE KEY-----\n".utf8)

    @Test func envelopeIsVersionedAndFreshlyNoncedPerSeal() throws {
        let first = try PushKeyEncryption.seal(Self.plaintext, topic: "t", key: key)
        let second = try PushKeyEncryption.seal(Self.plaintext, topic: "t", key: key)
        #expect(first.starts(with: Data("SMDMPK".utf8) + [1]))
        // Magic, version, nonce, ciphertext as long as the plaintext, tag.
        #expect(first.count == 6 + 1 + 12 + Self.plaintext.count + 16)
        #expect(first != second)
        #expect(try PushKeyEncryption.open(first, topic: "t", key: key) == Self.plaintext)
        #expect(!PushKeyEncryption.isSealed(Self.plaintext))
    }

    @Test func alteredOrTruncatedEnvelopeDoesNotOpen() throws {
        var sealed = try PushKeyEncryption.seal(Self.plaintext, topic: "t", key: key)
        var altered = sealed
        altered[altered.count - 20] ^= 0x01
        #expect(throws: PushKeyEncryptionError.authenticationFailed) {
            try PushKeyEncryption.open(altered, topic: "t", key: key)
        }
        #expect(throws: PushKeyEncryptionError.authenticationFailed) {
            try PushKeyEncryption.open(sealed, topic: "another topic", key: key)
        }
        #expect(throws: PushKeyEncryptionError.malformedEnvelope) {
            try PushKeyEncryption.open(sealed.prefix(20), topic: "t", key: key)
        }
        sealed[6] = 2
        #expect(throws: PushKeyEncryptionError.malformedEnvelope) {
            try PushKeyEncryption.open(sealed, topic: "t", key: key)
        }
    }

    @Test func keyMustBeBase64OfThirtyTwoBytes() throws {
        let bytes = Data((0..<32).map { UInt8($0) })
        let key = try PushKeyEncryption.key(base64: bytes.base64EncodedString() + "\n")
        #expect(key.withUnsafeBytes { Data($0) } == bytes)
        #expect(throws: PushKeyEncryptionError.self) {
            try PushKeyEncryption.key(base64: Data(count: 31).base64EncodedString())
        }
        #expect(throws: PushKeyEncryptionError.invalidKey("not base64")) {
            try PushKeyEncryption.key(base64: "%%%")
        }
    }
}
