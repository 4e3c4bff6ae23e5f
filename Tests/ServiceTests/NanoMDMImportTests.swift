import Foundation
import MDMServerSupport
import MDMStorage
import MDMTestSupport
import PostgresNIO
import Testing

@testable import APIService

@Suite("Migration from NanoMDM: migrate-from-nanomdm")
struct NanoMDMImportTests {
    @Test func importedDeviceGetsItsPendingCommandsInOrderAndKeepsItsPushInfo() async throws {
        try await TestStack.with { stack in
            let nano = try await TestDatabase.create(migrated: false, logger: TestStack.logger)
            do {
                let device = try stack.makeDevice()
                let pushCertificate = try PushCertificateFactory.make(topic: "com.apple.mgmt.External.nano")
                try await nano.withClient { client in
                    try await NanoMDMFixture.createSchema(client)
                    try await NanoMDMFixture.seed(client, device: device, pushCertificate: pushCertificate)
                }
                let settings = try Settings(
                    arguments: [],
                    environment: [
                        "MDM_DATABASE_URL": stack.database.url, "MDM_NANOMDM_DATABASE_URL": nano.url,
                        "MDM_DRY_RUN": "true",
                    ]
                )
                let dryRun = try await importNanoMDM(settings: settings, logger: TestStack.logger)
                #expect(dryRun.dryRun)
                #expect(dryRun.devices == .init(read: 1, imported: 1))
                #expect(dryRun.queueEntries == .init(read: 4, imported: 4))
                #expect(try await stack.database.count("SELECT count(*) FROM devices") == 0)
                #expect(try await stack.database.count("SELECT count(*) FROM push_certificates") == 0)

                let real = try Settings(
                    arguments: [],
                    environment: ["MDM_DATABASE_URL": stack.database.url, "MDM_NANOMDM_DATABASE_URL": nano.url]
                )
                let summary = try await importNanoMDM(settings: real, logger: TestStack.logger)
                #expect(summary.devices == .init(read: 1, imported: 1))
                #expect(summary.enrollments == .init(read: 2, imported: 2))
                #expect(
                    try await stack.database.count(
                        """
                        SELECT count(*) FROM enrollments WHERE id = '\(device.udid):USER-1' AND type = 'User'
                            AND parent_id = '\(device.udid)' AND user_short_name = 'ada' AND token_update IS NOT NULL
                        """) == 1)
                #expect(summary.certificateBindings == .init(read: 1, imported: 1))
                #expect(summary.commands == .init(read: 4, imported: 4))
                #expect(summary.queueEntries == .init(read: 4, imported: 4))
                #expect(summary.commandResults == .init(read: 1, imported: 1))
                #expect(summary.pushCertificates == .init(read: 1, imported: 1))

                // Importing again changes nothing.
                let again = try await importNanoMDM(settings: real, logger: TestStack.logger)
                #expect(again.devices.imported == 0 && again.queueEntries.imported == 0)
                #expect(again.pushCertificates.imported == 0)

                // The device proves the identity NanoMDM had bound and drains its queue in
                // NanoMDM's order: the pending command, then the one it had answered NotNow.
                #expect(try await device.idle().commandUUID() == "CMD-PENDING")
                #expect(try await device.acknowledge("CMD-PENDING").commandUUID() == "CMD-NOTNOW")
                #expect(try await device.acknowledge("CMD-NOTNOW").commandUUID() == nil)
                #expect(
                    try await stack.database.count(
                        "SELECT count(*) FROM command_results WHERE command_uuid = 'CMD-DONE' AND status = 'Acknowledged'"
                    )
                        == 1)

                let pushInfo = try await stack.database.withClient { client in
                    try await PostgresPushStore(client: client, logger: TestStack.logger)
                        .fetchPushTargets(enrollmentIDs: [device.udid])
                }
                #expect(pushInfo.first?.topic == "com.apple.mgmt.External.nano")
                #expect(pushInfo.first?.tokenHex == device.token.map { String(format: "%02x", $0) }.joined())
                #expect(pushInfo.first?.pushMagic == device.pushMagic)
                #expect(pushInfo.first?.certificateVersion != nil)
                #expect(try await stack.api(.GET, "/v1/pushcert?topic=com.apple.mgmt.External.nano").status == 200)
            } catch {
                try? await nano.drop()
                throw error
            }
            try await nano.drop()
        }
    }
}

/// NanoMDM's PostgreSQL tables as `../shared/NANOMDM-SCHEMA.md` describes them, and one device.
enum NanoMDMFixture {
    static let schema = [
        """
        CREATE TABLE devices (
            id VARCHAR(255) PRIMARY KEY, identity_cert TEXT, serial_number VARCHAR(127), unlock_token BYTEA,
            unlock_token_at TIMESTAMP, authenticate TEXT NOT NULL, authenticate_at TIMESTAMP NOT NULL,
            token_update TEXT, token_update_at TIMESTAMP, bootstrap_token_b64 TEXT, bootstrap_token_at TIMESTAMP,
            created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
            updated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
        )
        """,
        """
        CREATE TABLE users (
            id VARCHAR(255) NOT NULL UNIQUE, device_id VARCHAR(255) NOT NULL REFERENCES devices (id),
            user_short_name VARCHAR(255), user_long_name VARCHAR(255), token_update TEXT, token_update_at TIMESTAMP,
            user_authenticate TEXT, user_authenticate_at TIMESTAMP, user_authenticate_digest TEXT,
            user_authenticate_digest_at TIMESTAMP,
            created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
            updated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
            PRIMARY KEY (id, device_id)
        )
        """,
        """
        CREATE TABLE enrollments (
            id VARCHAR(255) PRIMARY KEY, device_id VARCHAR(255) NOT NULL REFERENCES devices (id),
            user_id VARCHAR(255) REFERENCES users (id), type VARCHAR(31) NOT NULL, topic VARCHAR(255) NOT NULL,
            push_magic VARCHAR(127) NOT NULL, token_hex VARCHAR(255) NOT NULL, enabled BOOLEAN NOT NULL DEFAULT TRUE,
            token_update_tally INTEGER NOT NULL DEFAULT 1, last_seen_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
            created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
            updated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
        )
        """,
        """
        CREATE TABLE commands (
            command_uuid VARCHAR(127) PRIMARY KEY, request_type VARCHAR(63) NOT NULL, command TEXT NOT NULL,
            created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
            updated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
        )
        """,
        """
        CREATE TABLE command_results (
            id VARCHAR(255) NOT NULL REFERENCES enrollments (id), command_uuid VARCHAR(127) NOT NULL
                REFERENCES commands (command_uuid),
            status VARCHAR(31) NOT NULL, result TEXT NOT NULL, not_now_at TIMESTAMP, not_now_tally INTEGER NOT NULL
                DEFAULT 0,
            created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
            updated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
            PRIMARY KEY (id, command_uuid)
        )
        """,
        """
        CREATE TABLE enrollment_queue (
            id VARCHAR(255) NOT NULL REFERENCES enrollments (id), command_uuid VARCHAR(127) NOT NULL
                REFERENCES commands (command_uuid),
            active BOOLEAN NOT NULL DEFAULT TRUE, priority SMALLINT NOT NULL DEFAULT 0,
            created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
            updated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
            PRIMARY KEY (id, command_uuid)
        )
        """,
        """
        CREATE TABLE push_certs (
            topic VARCHAR(255) PRIMARY KEY, cert_pem TEXT NOT NULL, key_pem TEXT NOT NULL, stale_token INTEGER NOT NULL,
            created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
            updated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
        )
        """,
        """
        CREATE TABLE cert_auth_associations (
            id VARCHAR(255) NOT NULL, sha256 CHAR(64) NOT NULL,
            created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
            updated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
            PRIMARY KEY (id, sha256)
        )
        """,
    ]

    static func createSchema(_ client: PostgresClient) async throws {
        for statement in schema { try await client.query(PostgresQuery(unsafeSQL: statement)) }
    }

    /// One device channel with push info and a bound identity; four commands: one pending,
    /// one answered NotNow (pending again after Idle), one acknowledged, one deactivated.
    static func seed(
        _ client: PostgresClient,
        device: SimulatedDevice,
        pushCertificate: PushCertificateFactory.Made
    ) async throws {
        let udid = device.udid
        let tokenHex = device.token.map { String(format: "%02x", $0) }.joined()
        let sha256 = device.identity.sha256.map { String(format: "%02x", $0) }.joined()
        try await client.query(
            """
            INSERT INTO devices (id, identity_cert, serial_number, authenticate, authenticate_at, token_update,
                token_update_at)
            VALUES (\(udid), \(device.identity.certificatePEM), 'C02NANO', '<plist>Authenticate</plist>',
                CURRENT_TIMESTAMP, '<plist>TokenUpdate</plist>', CURRENT_TIMESTAMP)
            """
        )
        try await client.query(
            """
            INSERT INTO enrollments (id, device_id, type, topic, push_magic, token_hex)
            VALUES (\(udid), \(udid), 'Device', 'com.apple.mgmt.External.nano', \(device.pushMagic), \(tokenHex))
            """
        )
        try await client.query(
            """
            INSERT INTO users (id, device_id, user_short_name, user_long_name, token_update, token_update_at)
            VALUES ('USER-1', \(udid), 'ada', 'Ada Lovelace', '<plist>user TokenUpdate</plist>', CURRENT_TIMESTAMP)
            """
        )
        try await client.query(
            """
            INSERT INTO enrollments (id, device_id, user_id, type, topic, push_magic, token_hex)
            VALUES (\(udid + ":USER-1"), \(udid), 'USER-1', 'User', 'com.apple.mgmt.External.nano', 'user-magic', 'beef')
            """
        )
        try await client.query("INSERT INTO cert_auth_associations (id, sha256) VALUES (\(udid), \(sha256))")
        for (offset, uuid) in ["CMD-DONE", "CMD-PENDING", "CMD-NOTNOW", "CMD-OFF"].enumerated() {
            let plist = String(decoding: try makeCommand("DeviceInformation", uuid: uuid).plist, as: UTF8.self)
            let created = "2024-01-01 00:00:0\(offset)"
            try await client.query(
                """
                INSERT INTO commands (command_uuid, request_type, command, created_at)
                VALUES (\(uuid), 'DeviceInformation', \(plist), \(created)::timestamp)
                """
            )
            try await client.query(
                """
                INSERT INTO enrollment_queue (id, command_uuid, active, created_at)
                VALUES (\(udid), \(uuid), \(uuid != "CMD-OFF"), \(created)::timestamp)
                """
            )
        }
        for (uuid, status) in [("CMD-DONE", "Acknowledged"), ("CMD-NOTNOW", "NotNow")] {
            try await client.query(
                """
                INSERT INTO command_results (id, command_uuid, status, result, not_now_at, not_now_tally)
                VALUES (\(udid), \(uuid), \(status), '<plist>report</plist>',
                    CASE WHEN \(status) = 'NotNow' THEN CURRENT_TIMESTAMP END, CASE WHEN \(status) = 'NotNow' THEN 1 ELSE 0 END)
                """
            )
        }
        try await client.query(
            """
            INSERT INTO push_certs (topic, cert_pem, key_pem, stale_token)
            VALUES ('com.apple.mgmt.External.nano', \(pushCertificate.certificatePEM), \(pushCertificate.keyPEM), 0)
            """
        )
    }
}
