import Foundation
import Logging
import MDMStorage
import PostgresNIO

/// Many pushable enrollments at once, for push bursts and benchmarks: `count` device channels
/// named `<prefix>-1`…`<prefix>-<count>` on `topic`, each with a PushMagic and a distinct
/// 64-hex-digit token, and the topic's push certificate issued by `pushCA`.
package enum PushFleet {
    /// Returns the enrollments' tokens.
    @discardableResult
    package static func seed(
        _ client: PostgresClient,
        prefix: String,
        count: Int,
        topic: String,
        pushCA: TestCertificateAuthority,
        logger: Logger
    ) async throws -> Set<String> {
        let certificate = try pushCA.issuePushCertificate(topic: topic)
        try await PostgresPushCertificateStore(client: client, logger: logger).savePushCertificate(
            PushCertificateRecord(
                topic: topic,
                certificatePEM: certificate.certificatePEM,
                privateKeyPEM: certificate.privateKeyPEM,
                notAfter: Date() + 86400
            )
        )
        let rows = try await client.query(
            """
            WITH devices AS (
                INSERT INTO devices (id) SELECT \(prefix) || '-' || n FROM generate_series(1, \(count)) AS n
                RETURNING id
            ),
            enrolled AS (
                INSERT INTO enrollments (id, device_id, type, enabled, topic, push_magic, token_hex)
                SELECT id, id, 'Device', true, \(topic), 'magic-' || id, md5(id) || md5(id) FROM devices
                RETURNING token_hex
            )
            SELECT token_hex FROM enrolled
            """,
            logger: logger
        )
        var tokens: Set<String> = []
        for try await token in rows.decode(String.self) { tokens.insert(token) }
        return tokens
    }
}
