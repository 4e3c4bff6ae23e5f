import Foundation
import Logging
import MDMProtocol
import NIOCore
import PostgresNIO

/// `EnrollmentStore` on PostgreSQL: devices, enrollments, certificate bindings and bootstrap
/// tokens.
package struct PostgresEnrollmentStore: EnrollmentStore {
    private let client: PostgresClient
    private let logger: Logger

    package init(client: PostgresClient, logger: Logger) {
        self.client = client
        self.logger = logger
    }

    package func authenticate(_ record: AuthenticateRecord) async throws -> BindingDecision {
        let deviceID = record.enrollment.deviceChannelID
        let hash = ByteBuffer(bytes: record.certificateHash)
        var binds = PostgresBindings()
        binds.append(deviceID)
        binds.append(record.serialNumber)
        binds.append(ByteBuffer(bytes: record.certificate))
        try binds.append(record.rawMessage)
        binds.append(hash)
        binds.append(record.enrollment.type.rawValue)
        binds.append(record.topic)
        if let event = record.webhookEvent {
            Self.append(event, to: &binds)
        }
        let apply = PostgresQuery(
            unsafeSQL: record.webhookEvent == nil ? Self.authenticateSQL : Self.authenticateWebhookSQL,
            binds: binds
        )
        let logger = self.logger
        do {
            return try await client.withTransaction(logger: logger) { connection in
                let bound = try await connection.query(
                    "SELECT device_id FROM certificate_bindings WHERE sha256 = \(hash)",
                    logger: logger
                ).first(decoding: String.self)
                if let bound, bound != deviceID {
                    return .boundToAnotherDevice
                }
                let newBindings = try await connection.query(apply, logger: logger).first(decoding: Int.self)
                if bound == nil, newBindings == 0 {
                    // Another transaction bound the hash since our first look.
                    let owner = try await connection.query(
                        "SELECT device_id FROM certificate_bindings WHERE sha256 = \(hash)",
                        logger: logger
                    ).first(decoding: String.self)
                    if owner != deviceID {
                        throw CertificateBoundElsewhere()
                    }
                }
                return .allowed
            }
        } catch let error as PostgresTransactionError where error.closureError is CertificateBoundElsewhere {
            return .boundToAnotherDevice
        }
    }

    package func checkBinding(
        certificateHash: [UInt8],
        deviceChannelID: String,
        retro: Bool
    ) async throws -> BindingDecision {
        let hash = ByteBuffer(bytes: certificateHash)
        let bound = try await CertificateBindings.boundDevice(of: hash, client: client, logger: logger)
        let decision = CertificateBindings.decision(boundDeviceID: bound, deviceChannelID: deviceChannelID)
        guard decision == .notBound, retro else { return decision }
        return try await CertificateBindings.bindOnFirstSight(
            hash,
            deviceChannelID: deviceChannelID,
            client: client,
            logger: logger
        )
    }

    package func saveTokenUpdate(_ record: TokenUpdateRecord) async throws -> Int {
        let enrollment = record.enrollment
        let deviceID = enrollment.deviceChannelID
        var binds = PostgresBindings()
        binds.append(enrollment.id)
        binds.append(deviceID)
        binds.append(enrollment.type.rawValue)
        binds.append(enrollment.parentID)
        binds.append(Self.userID(of: enrollment))
        binds.append(record.userShortName)
        binds.append(record.userLongName)
        binds.append(record.topic)
        binds.append(record.pushMagic)
        binds.append(Self.lowercaseHex(record.token))
        try binds.append(record.rawMessage)
        try binds.append(enrollment.type.isUserChannel ? nil : record.unlockToken)
        if let event = record.webhookEvent {
            Self.append(event, to: &binds)
            binds.append(event.bodyAfterTally.map { ByteBuffer(bytes: $0) })
        }
        let sql = record.webhookEvent == nil ? Self.tokenUpdateSQL : Self.tokenUpdateWebhookSQL
        let tally = try await client.query(PostgresQuery(unsafeSQL: sql, binds: binds), logger: logger)
            .first(decoding: Int.self)
        guard let tally else { throw StorageError.unknownDevice(deviceID) }
        return tally
    }

    package func checkOut(enrollmentID: String, webhookEvent: WebhookEventRecord?) async throws {
        try await execute(
            "UPDATE enrollments SET enabled = false, last_seen_at = now(), updated_at = now() WHERE id = $1",
            binds: Self.bindings(enrollmentID),
            recording: webhookEvent
        )
    }

    package func saveBootstrapToken(deviceID: String, token: Data?, webhookEvent: WebhookEventRecord?) async throws {
        let token = token.flatMap { $0.isEmpty ? nil : $0 }
        var binds = PostgresBindings()
        binds.append(deviceID)
        try binds.append(token)
        try await execute(
            """
            UPDATE devices
            SET bootstrap_token = $2, bootstrap_token_at = CASE WHEN $2::bytea IS NULL THEN NULL ELSE now() END,
                updated_at = now()
            WHERE id = $1
            """,
            binds: binds,
            recording: webhookEvent
        )
    }

    package func fetchBootstrapToken(deviceID: String) async throws -> Data? {
        let token = try await client.query(
            "SELECT bootstrap_token FROM devices WHERE id = \(deviceID)",
            logger: logger
        ).first(decoding: Data?.self)
        return token ?? nil
    }

    package func markSeen(enrollmentID: String, webhookEvent: WebhookEventRecord?) async throws {
        try await execute(
            "UPDATE enrollments SET last_seen_at = now() WHERE id = $1",
            binds: Self.bindings(enrollmentID),
            recording: webhookEvent
        )
    }

    /// Runs `sql` (an UPDATE numbering its parameters from $1) as one statement, with the
    /// webhook event's insert as CTEs in front of it when there is one.
    private func execute(_ sql: String, binds: PostgresBindings, recording event: WebhookEventRecord?) async throws {
        guard let event else {
            try await client.query(PostgresQuery(unsafeSQL: sql, binds: binds), logger: logger)
            return
        }
        var binds = binds
        let first = binds.count + 1
        Self.append(event, to: &binds)
        let select = (first..<first + 4).map { "$\($0)" }.joined(separator: ", ")
        let recorded = "WITH " + WebhookOutboxSQL.recordEvent(select: select) + "\n" + sql
        try await client.query(PostgresQuery(unsafeSQL: recorded, binds: binds), logger: logger)
    }

    private static func bindings(_ id: String) -> PostgresBindings {
        var binds = PostgresBindings(capacity: 5)
        binds.append(id)
        return binds
    }

    /// The event's ID, enrollment, topic and body, in that order.
    private static func append(_ event: WebhookEventRecord, to binds: inout PostgresBindings) {
        binds.append(event.eventID)
        binds.append(event.enrollmentID)
        binds.append(event.topic)
        binds.append(ByteBuffer(bytes: event.body))
    }

    package func fetchEnrollment(id: String) async throws -> EnrollmentRecord? {
        let rows = try await client.query(
            """
            SELECT id, device_id, type, parent_id, topic, push_magic, token_hex, enabled, token_update_tally,
                last_seen_at
            FROM enrollments WHERE id = \(id)
            """,
            logger: logger
        )
        for try await row in rows {
            let (id, deviceID, type, parentID, topic, pushMagic, tokenHex, enabled, tally, lastSeenAt) =
                try row.decode((String, String, String, String?, String?, String?, String?, Bool, Int, Date?).self)
            return EnrollmentRecord(
                id: id,
                deviceID: deviceID,
                type: type,
                parentID: parentID,
                topic: topic,
                pushMagic: pushMagic,
                tokenHex: tokenHex,
                enabled: enabled,
                tokenUpdateTally: tally,
                lastSeenAt: lastSeenAt
            )
        }
        return nil
    }

    package func saveMigratedAuthenticate(_ record: MigratedAuthenticate) async throws {
        try await client.query(
            """
            WITH device AS (
                INSERT INTO devices (id, serial_number, authenticate, authenticate_at)
                VALUES (\(record.enrollment.deviceChannelID), \(record.serialNumber), \(record.rawMessage), now())
                ON CONFLICT (id) DO UPDATE SET
                    serial_number = coalesce(excluded.serial_number, devices.serial_number),
                    authenticate = excluded.authenticate,
                    authenticate_at = excluded.authenticate_at,
                    updated_at = now()
            ),
            deactivated AS (
                UPDATE queue_entries SET state = 'inactive', updated_at = now()
                WHERE state = 'pending' AND enrollment_id IN (
                    SELECT id FROM enrollments WHERE device_id = \(record.enrollment.deviceChannelID))
            ),
            user_channels AS (
                UPDATE enrollments SET enabled = false, token_update_tally = 0, updated_at = now()
                WHERE device_id = \(record.enrollment.deviceChannelID) AND id <> \(record.enrollment.deviceChannelID)
            )
            INSERT INTO enrollments (id, device_id, type, topic)
            VALUES (
                \(record.enrollment.deviceChannelID), \(record.enrollment.deviceChannelID),
                \(record.enrollment.type.rawValue), \(record.topic)
            )
            ON CONFLICT (id) DO UPDATE SET
                enabled = false,
                token_update_tally = 0,
                topic = coalesce(excluded.topic, enrollments.topic),
                updated_at = now()
            """,
            logger: logger
        )
    }

    package func fetchBoundDevice(certificateHash: [UInt8]) async throws -> String? {
        try await client.query(
            "SELECT device_id FROM certificate_bindings WHERE sha256 = \(ByteBuffer(bytes: certificateHash))",
            logger: logger
        ).first(decoding: String.self)
    }

    /// The user part of a user channel's ID (`UDID:UserID`, `EnrollmentID:EnrollmentUserID`).
    /// A Shared iPad's channel is named after the short name; its UserID is Apple's fixed one.
    private static func userID(of enrollment: EnrollmentIdentity) -> String? {
        switch enrollment.type {
        case .device, .userEnrollmentDevice:
            return nil
        case .sharedIPad:
            return EnrollmentKeys.sharedIPadUserID
        case .user, .userEnrollment:
            guard let parentID = enrollment.parentID, enrollment.id.hasPrefix(parentID + ":") else { return nil }
            return String(enrollment.id.dropFirst(parentID.count + 1))
        }
    }

    private static func lowercaseHex(_ data: Data) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var hex: [UInt8] = []
        hex.reserveCapacity(data.count * 2)
        for byte in data {
            hex.append(digits[Int(byte >> 4)])
            hex.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: hex, as: UTF8.self)
    }

    // $1 device ID, $2 serial, $3 certificate, $4 raw message, $5 hash, $6 type, $7 topic;
    // with a webhook event, $8–$11 its ID, enrollment, topic and body.
    // The queue, enrollment and device changes touch disjoint rows, so one statement carries
    // them all; foreign keys are checked at its end, after the device row exists. Returns the
    // number of bindings created (0 when the hash was already bound).
    private static let authenticateSQL = authenticateSQL(recording: nil)
    private static let authenticateWebhookSQL = authenticateSQL(
        recording: WebhookOutboxSQL.recordEvent(select: "$8, $9, $10, $11")
    )

    private static func authenticateSQL(recording: String?) -> String {
        """
        WITH device AS (
            INSERT INTO devices (id, serial_number, identity_cert, authenticate, authenticate_at)
            VALUES ($1, $2, $3, $4, now())
            ON CONFLICT (id) DO UPDATE SET
                serial_number = coalesce(excluded.serial_number, devices.serial_number),
                identity_cert = excluded.identity_cert,
                authenticate = excluded.authenticate,
                authenticate_at = excluded.authenticate_at,
                bootstrap_token = NULL,
                bootstrap_token_at = NULL,
                updated_at = now()
        ),
        binding AS (
            INSERT INTO certificate_bindings (sha256, device_id) VALUES ($5, $1)
            ON CONFLICT (sha256) DO NOTHING
            RETURNING 1
        ),
        deactivated AS (
            UPDATE queue_entries SET state = 'inactive', updated_at = now()
            WHERE state = 'pending' AND enrollment_id IN (SELECT id FROM enrollments WHERE device_id = $1)
        ),
        user_channels AS (
            UPDATE enrollments SET enabled = false, token_update_tally = 0, updated_at = now()
            WHERE device_id = $1 AND id <> $1
        ),
        device_channel AS (
            INSERT INTO enrollments (id, device_id, type, topic, last_seen_at)
            VALUES ($1, $1, $6, $7, now())
            ON CONFLICT (id) DO UPDATE SET
                enabled = false,
                token_update_tally = 0,
                topic = coalesce(excluded.topic, enrollments.topic),
                last_seen_at = excluded.last_seen_at,
                updated_at = now()
        )\(recording.map { ",\n" + $0 } ?? "")
        SELECT count(*)::int FROM binding
        """
    }

    // $1 enrollment ID, $2 device ID, $3 type, $4 parent, $5 user ID, $6 short name, $7 long
    // name, $8 topic, $9 PushMagic, $10 token hex, $11 raw message, $12 unlock token; with a
    // webhook event, $13–$16 its ID, enrollment, topic and body, and $17 the body after the
    // tally. No row back means the device never authenticated (and no event is recorded).
    private static let tokenUpdateSQL = tokenUpdateSQL(recording: nil)
    private static let tokenUpdateWebhookSQL = tokenUpdateSQL(
        recording: WebhookOutboxSQL.recordEvent(
            select: """
                $13, $14, $15,
                    CASE WHEN $17::bytea IS NULL THEN $16
                    ELSE $16 || convert_to(token_update_tally::text, 'UTF8') || $17 END
                FROM enrollment
                """
        )
    )

    private static func tokenUpdateSQL(recording: String?) -> String {
        """
        WITH enrollment AS (
            INSERT INTO enrollments AS e (
                id, device_id, type, parent_id, user_id, user_short_name, user_long_name, topic, push_magic,
                token_hex, enabled, token_update_tally, token_update, token_update_at, last_seen_at
            )
            SELECT $1, d.id, $3, $4, $5, $6, $7, $8, $9, $10, true, 1, $11, now(), now()
            FROM devices d WHERE d.id = $2
            ON CONFLICT (id) DO UPDATE SET
                type = excluded.type,
                parent_id = excluded.parent_id,
                user_id = excluded.user_id,
                user_short_name = coalesce(excluded.user_short_name, e.user_short_name),
                user_long_name = coalesce(excluded.user_long_name, e.user_long_name),
                topic = excluded.topic,
                push_magic = excluded.push_magic,
                token_hex = excluded.token_hex,
                enabled = true,
                token_update_tally = e.token_update_tally + 1,
                token_update = excluded.token_update,
                token_update_at = excluded.token_update_at,
                last_seen_at = excluded.last_seen_at,
                push_unregistered_at = NULL,
                push_error = NULL,
                updated_at = now()
            RETURNING token_update_tally
        ),
        unlock AS (
            UPDATE devices SET unlock_token = $12, unlock_token_at = now(), updated_at = now()
            WHERE id = $2 AND $12::bytea IS NOT NULL
        )\(recording.map { ",\n" + $0 } ?? "")
        SELECT token_update_tally FROM enrollment
        """
    }
}

/// Rolls back an `Authenticate` that lost a race for its certificate hash.
private struct CertificateBoundElsewhere: Error {}
