import Foundation
import Logging
import PostgresNIO

/// `PushCertificateStore` on PostgreSQL, one row per topic.
package struct PostgresPushCertificateStore: PushCertificateStore {
    private let client: PostgresClient
    private let logger: Logger

    package init(client: PostgresClient, logger: Logger) {
        self.client = client
        self.logger = logger
    }

    package func savePushCertificate(_ record: PushCertificateRecord) async throws {
        try await client.query(
            """
            INSERT INTO push_certificates (topic, certificate_pem, private_key, not_after)
            VALUES (\(record.topic), \(record.certificatePEM), \(Data(record.privateKeyPEM.utf8)), \(record.notAfter))
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
                privateKeyPEM: String(decoding: privateKey, as: UTF8.self),
                notAfter: notAfter
            )
        }
        return nil
    }
}
