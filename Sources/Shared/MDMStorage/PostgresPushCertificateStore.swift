import Crypto
import Foundation
import Logging
import PostgresNIO

/// `PushCertificateStore` on PostgreSQL, one row per topic.
///
/// With a key-encryption key, private keys are sealed before they are written (`PushKeyEncryption`) and
/// opened after they are read. Rows written before encryption was turned on hold the plain PEM and still
/// load; they are sealed the next time the topic's certificate is saved.
package struct PostgresPushCertificateStore: PushCertificateStore {
    private let client: PostgresClient
    private let logger: Logger
    private let keyEncryptionKey: PushKeyEncryptionKey?

    package init(client: PostgresClient, logger: Logger, keyEncryptionKey: SymmetricKey? = nil) {
        self.client = client
        self.logger = logger
        self.keyEncryptionKey = keyEncryptionKey.map(PushKeyEncryptionKey.init)
    }

    package func savePushCertificate(_ record: PushCertificateRecord) async throws {
        let privateKey = Data(record.privateKeyPEM.utf8)
        let stored =
            if let keyEncryptionKey {
                try PushKeyEncryption.seal(privateKey, topic: record.topic, key: keyEncryptionKey.symmetricKey)
            } else {
                privateKey
            }
        try await client.query(
            """
            INSERT INTO push_certificates (topic, certificate_pem, private_key, not_after)
            VALUES (\(record.topic), \(record.certificatePEM), \(stored), \(record.notAfter))
            ON CONFLICT (topic) DO UPDATE SET
                certificate_pem = excluded.certificate_pem,
                private_key = excluded.private_key,
                not_after = excluded.not_after,
                updated_at = now()
            """,
            logger: logger
        )
    }

    package func fetchPushCertificate(topic: String) async throws -> PushCertificateRecord? {
        let rows = try await client.query(
            "SELECT topic, certificate_pem, private_key, not_after FROM push_certificates WHERE topic = \(topic)",
            logger: logger
        )
        for try await (topic, certificatePEM, privateKey, notAfter) in rows.decode((String, String, Data, Date).self) {
            return PushCertificateRecord(
                topic: topic,
                certificatePEM: certificatePEM,
                privateKeyPEM: String(decoding: try privateKeyPEM(stored: privateKey, topic: topic), as: UTF8.self),
                notAfter: notAfter
            )
        }
        return nil
    }

    private func privateKeyPEM(stored: Data, topic: String) throws(StorageError) -> Data {
        guard PushKeyEncryption.isSealed(stored) else { return stored }
        guard let keyEncryptionKey else { throw .pushKeyEncrypted(topic: topic) }
        do {
            return try PushKeyEncryption.open(stored, topic: topic, key: keyEncryptionKey.symmetricKey)
        } catch {
            throw .pushKeyUndecryptable(topic: topic)
        }
    }
}
