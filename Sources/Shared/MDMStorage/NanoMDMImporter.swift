import Foundation
import Logging
import PostgresNIO

/// How many rows of each kind an import read from NanoMDM and how many were new to SwiftMDM
/// (the rest were already there and left as they are: importing twice changes nothing).
package struct NanoMDMImportSummary: Sendable, Equatable, CustomStringConvertible {
    package struct Count: Sendable, Equatable {
        package var read = 0
        package var imported = 0

        package init(read: Int = 0, imported: Int = 0) {
            self.read = read
            self.imported = imported
        }
    }

    package var devices = Count()
    package var enrollments = Count()
    package var certificateBindings = Count()
    package var commands = Count()
    package var queueEntries = Count()
    package var commandResults = Count()
    package var pushCertificates = Count()
    package var dryRun = false

    package var description: String {
        let rows: [(String, Count)] = [
            ("devices", devices), ("enrollments", enrollments), ("certificate bindings", certificateBindings),
            ("commands", commands), ("queue entries", queueEntries), ("command results", commandResults),
            ("push certificates", pushCertificates),
        ]
        var lines = dryRun ? ["dry run: nothing was written"] : []
        for (name, count) in rows {
            lines.append(
                "\(name): \(count.read) read, \(count.imported) \(dryRun ? "would be imported" : "imported"), "
                    + "\(count.read - count.imported) already present or skipped")
        }
        return lines.joined(separator: "\n")
    }
}

/// A NanoMDM push certificate as read from its `push_certs` table.
package struct NanoMDMPushCertificate: Sendable, Equatable {
    package var topic: String
    package var certificatePEM: String
    package var privateKeyPEM: String
}

/// Copies a NanoMDM PostgreSQL database (`../shared/NANOMDM-SCHEMA.md`) into SwiftMDM's schema:
/// devices, enrollments, certificate bindings, commands, queue entries with their results. Rows
/// travel in batches as one JSON parameter per statement, so nulls, bytes and timestamps need
/// no per-column array tricks. Everything is written in one transaction: a failed import
/// leaves nothing behind, and a dry run is the same import rolled back.
///
/// Push certificates are returned rather than written, so the caller stores them through its
/// `PushCertificateStore` (which validates them and encrypts keys at rest).
package struct NanoMDMImporter: Sendable {
    private let source: PostgresClient
    private let destination: PostgresClient
    private let logger: Logger
    private let batchSize: Int

    package init(source: PostgresClient, destination: PostgresClient, logger: Logger, batchSize: Int = 5000) {
        self.source = source
        self.destination = destination
        self.logger = logger
        self.batchSize = batchSize
    }

    package func run(dryRun: Bool) async throws -> (NanoMDMImportSummary, [NanoMDMPushCertificate]) {
        var summary = NanoMDMImportSummary()
        summary.dryRun = dryRun
        let devices = try await readDevices()
        let enrollments = try await readEnrollments()
        let bindings = try await readBindings()
        let commands = try await readCommands()
        let (entries, results) = try await readQueue()
        let certificates = try await readPushCertificates()

        do {
            try await destination.withTransaction(logger: logger) { connection in
                summary.devices = try await insert(devices, with: Self.insertDevices, on: connection)
                summary.enrollments = try await insert(enrollments, with: Self.insertEnrollments, on: connection)
                summary.certificateBindings = try await insert(bindings, with: Self.insertBindings, on: connection)
                summary.commands = try await insert(commands, with: Self.insertCommands, on: connection)
                summary.queueEntries = try await insert(entries, with: Self.insertQueueEntries, on: connection)
                summary.commandResults = try await insert(results, with: Self.insertResults, on: connection)
                if dryRun { throw DryRunRollback() }
            }
        } catch let error as PostgresTransactionError where error.closureError is DryRunRollback {
            guard error.rollbackError == nil else { throw error }
        }
        summary.pushCertificates.read = certificates.count
        return (summary, certificates)
    }

    private struct DryRunRollback: Error {}

    private func insert<Row: Encodable>(
        _ rows: [Row],
        with sql: String,
        on connection: PostgresConnection
    ) async throws -> NanoMDMImportSummary.Count {
        var count = NanoMDMImportSummary.Count(read: rows.count)
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        for start in stride(from: 0, to: rows.count, by: batchSize) {
            let batch = try encoder.encode(Array(rows[start..<min(start + batchSize, rows.count)]))
            let json = String(decoding: batch, as: UTF8.self)
            var query = PostgresQuery(unsafeSQL: sql)
            query.binds.append(json)
            let inserted = try await connection.query(query, logger: logger).first(decoding: Int.self) ?? 0
            count.imported += inserted
        }
        return count
    }

    // MARK: Reading NanoMDM

    private struct Device: Encodable {
        var id: String
        var serialNumber: String?
        var identityCert: Data?
        var unlockToken: Data?
        var unlockTokenAt: Date?
        var authenticate: Data
        var authenticateAt: Date?
        var bootstrapToken: Data?
        var bootstrapTokenAt: Date?
        var createdAt: Date?
        var updatedAt: Date?
    }

    private func readDevices() async throws -> [Device] {
        var devices: [Device] = []
        let rows = try await source.query(
            """
            SELECT id, serial_number, identity_cert, unlock_token, unlock_token_at, authenticate, authenticate_at,
                bootstrap_token_b64, bootstrap_token_at, created_at, updated_at
            FROM devices ORDER BY created_at, id
            """,
            logger: logger
        )
        for try await row in rows {
            let cells = row.makeRandomAccess()
            devices.append(
                Device(
                    id: try cells["id"].decode(String.self),
                    serialNumber: try cells["serial_number"].decode(String?.self),
                    identityCert: try cells["identity_cert"].decode(String?.self).flatMap(Self.derFromPEM),
                    unlockToken: try cells["unlock_token"].decode(ByteBuffer?.self).map { Data($0.readableBytesView) },
                    unlockTokenAt: try cells["unlock_token_at"].decode(Date?.self),
                    authenticate: Data(try cells["authenticate"].decode(String.self).utf8),
                    authenticateAt: try cells["authenticate_at"].decode(Date?.self),
                    bootstrapToken: try cells["bootstrap_token_b64"].decode(String?.self).flatMap {
                        Data(base64Encoded: $0, options: .ignoreUnknownCharacters)
                    },
                    bootstrapTokenAt: try cells["bootstrap_token_at"].decode(Date?.self),
                    createdAt: try cells["created_at"].decode(Date?.self),
                    updatedAt: try cells["updated_at"].decode(Date?.self)
                )
            )
        }
        return devices
    }

    private struct Enrollment: Encodable {
        var id: String
        var deviceID: String
        var type: String
        var parentID: String?
        var userID: String?
        var userShortName: String?
        var userLongName: String?
        var topic: String?
        var pushMagic: String?
        var tokenHex: String?
        var enabled: Bool
        var tokenUpdateTally: Int
        var tokenUpdate: Data?
        var tokenUpdateAt: Date?
        var lastSeenAt: Date?
        var createdAt: Date?
        var updatedAt: Date?
    }

    private func readEnrollments() async throws -> [Enrollment] {
        var enrollments: [Enrollment] = []
        let rows = try await source.query(
            """
            SELECT e.id, e.device_id, e.user_id, e.type, e.topic, e.push_magic, e.token_hex, e.enabled,
                e.token_update_tally, e.last_seen_at, e.created_at, e.updated_at, u.user_short_name, u.user_long_name,
                CASE WHEN e.user_id IS NULL THEN d.token_update ELSE u.token_update END AS token_update,
                CASE WHEN e.user_id IS NULL THEN d.token_update_at ELSE u.token_update_at END AS token_update_at
            FROM enrollments e
            JOIN devices d ON d.id = e.device_id
            LEFT JOIN users u ON u.id = e.user_id
            ORDER BY e.created_at, e.id
            """,
            logger: logger
        )
        for try await row in rows {
            let cells = row.makeRandomAccess()
            let id = try cells["id"].decode(String.self)
            let deviceID = try cells["device_id"].decode(String.self)
            enrollments.append(
                Enrollment(
                    id: id,
                    deviceID: deviceID,
                    type: try cells["type"].decode(String.self),
                    // A user channel hangs off its device channel, whose ID is `device_id`.
                    parentID: id == deviceID ? nil : deviceID,
                    userID: try cells["user_id"].decode(String?.self),
                    userShortName: try cells["user_short_name"].decode(String?.self),
                    userLongName: try cells["user_long_name"].decode(String?.self),
                    topic: try cells["topic"].decode(String?.self),
                    pushMagic: try cells["push_magic"].decode(String?.self),
                    tokenHex: try cells["token_hex"].decode(String?.self)?.lowercased(),
                    enabled: try cells["enabled"].decode(Bool?.self) ?? false,
                    tokenUpdateTally: try cells["token_update_tally"].decode(Int?.self) ?? 0,
                    tokenUpdate: try cells["token_update"].decode(String?.self).map { Data($0.utf8) },
                    tokenUpdateAt: try cells["token_update_at"].decode(Date?.self),
                    lastSeenAt: try cells["last_seen_at"].decode(Date?.self),
                    createdAt: try cells["created_at"].decode(Date?.self),
                    updatedAt: try cells["updated_at"].decode(Date?.self)
                )
            )
        }
        return enrollments
    }

    private struct Binding: Encodable {
        var sha256: String
        var deviceID: String
        var createdAt: Date?
    }

    private func readBindings() async throws -> [Binding] {
        var bindings: [Binding] = []
        let rows = try await source.query(
            "SELECT id, sha256, created_at FROM cert_auth_associations ORDER BY created_at, id",
            logger: logger
        )
        for try await (id, sha256, createdAt) in rows.decode((String, String, Date?).self) {
            let hex = sha256.trimmingCharacters(in: .whitespaces).lowercased()
            guard hex.count == 64, hex.allSatisfy(\.isHexDigit) else {
                logger.warning("skipping a malformed certificate hash", metadata: ["mdm.enrollment_id": "\(id)"])
                continue
            }
            bindings.append(Binding(sha256: hex, deviceID: id, createdAt: createdAt))
        }
        return bindings
    }

    private struct Command: Encodable {
        var commandUUID: String
        var requestType: String
        var command: Data
        var createdAt: Date?
    }

    private func readCommands() async throws -> [Command] {
        var commands: [Command] = []
        let rows = try await source.query(
            "SELECT command_uuid, request_type, command, created_at FROM commands ORDER BY created_at, command_uuid",
            logger: logger
        )
        for try await (uuid, requestType, command, createdAt) in rows.decode((String, String, String, Date?).self) {
            commands.append(
                Command(commandUUID: uuid, requestType: requestType, command: Data(command.utf8), createdAt: createdAt))
        }
        return commands
    }

    private struct QueueEntry: Encodable {
        var enrollmentID: String
        var commandUUID: String
        var priority: Int
        var state: String
        var notNowAt: Date?
        var notNowCount: Int
        var createdAt: Date?
        var updatedAt: Date?
    }

    private struct Result: Encodable {
        var enrollmentID: String
        var commandUUID: String
        var status: String
        var result: Data
        var createdAt: Date?
        var updatedAt: Date?
    }

    /// Queue entries in NanoMDM's delivery order (SwiftMDM's `seq` follows insertion order),
    /// with results. A result without a queue entry (NanoMDM deleted it) still gets a retired
    /// entry: results hang off entries here.
    private func readQueue() async throws -> ([QueueEntry], [Result]) {
        var entries: [QueueEntry] = []
        var results: [Result] = []
        let rows = try await source.query(
            """
            SELECT coalesce(q.id, r.id) AS enrollment_id, coalesce(q.command_uuid, r.command_uuid) AS command_uuid,
                coalesce(q.active, false) AS active, coalesce(q.priority, 0)::int AS priority,
                coalesce(q.created_at, r.created_at) AS created_at,
                coalesce(r.updated_at, q.updated_at) AS updated_at,
                r.status, r.result, r.not_now_at, coalesce(r.not_now_tally, 0)::int AS not_now_tally,
                r.created_at AS result_created_at
            FROM enrollment_queue q
            FULL JOIN command_results r ON r.id = q.id AND r.command_uuid = q.command_uuid
            ORDER BY 5, 1, 2
            """,
            logger: logger
        )
        for try await row in rows {
            let cells = row.makeRandomAccess()
            let enrollmentID = try cells["enrollment_id"].decode(String.self)
            let commandUUID = try cells["command_uuid"].decode(String.self)
            let status = try cells["status"].decode(String?.self)
            let active = try cells["active"].decode(Bool.self)
            let updatedAt = try cells["updated_at"].decode(Date?.self)
            let state: String
            switch status {
            case nil, "NotNow"?: state = active ? "pending" : "inactive"
            default: state = "done"
            }
            entries.append(
                QueueEntry(
                    enrollmentID: enrollmentID,
                    commandUUID: commandUUID,
                    priority: try cells["priority"].decode(Int.self),
                    state: state,
                    notNowAt: status == "NotNow" ? try cells["not_now_at"].decode(Date?.self) : nil,
                    notNowCount: status == "NotNow" ? try cells["not_now_tally"].decode(Int.self) : 0,
                    createdAt: try cells["created_at"].decode(Date?.self),
                    updatedAt: updatedAt
                )
            )
            if let status, status != "NotNow", let result = try cells["result"].decode(String?.self) {
                results.append(
                    Result(
                        enrollmentID: enrollmentID,
                        commandUUID: commandUUID,
                        status: status,
                        result: Data(result.utf8),
                        createdAt: try cells["result_created_at"].decode(Date?.self),
                        updatedAt: updatedAt
                    )
                )
            }
        }
        return (entries, results)
    }

    private func readPushCertificates() async throws -> [NanoMDMPushCertificate] {
        var certificates: [NanoMDMPushCertificate] = []
        let rows = try await source.query(
            "SELECT topic, cert_pem, key_pem FROM push_certs ORDER BY topic", logger: logger)
        for try await (topic, certificate, key) in rows.decode((String, String, String).self) {
            certificates.append(NanoMDMPushCertificate(topic: topic, certificatePEM: certificate, privateKeyPEM: key))
        }
        return certificates
    }

    /// The DER bytes of the first PEM block, or `nil` when there is none.
    static func derFromPEM(_ pem: String) -> Data? {
        let lines = pem.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
        guard let begin = lines.firstIndex(where: { $0.hasPrefix("-----BEGIN") }),
            let end = lines[begin...].firstIndex(where: { $0.hasPrefix("-----END") })
        else { return nil }
        return Data(base64Encoded: lines[(begin + 1)..<end].joined())
    }
}
