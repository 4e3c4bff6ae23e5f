import Foundation
import Logging
import MDMProtocol
import MDMStorage
import NIOCore
import PostgresNIO

/// The stores over one test database, with shorthands for the protocol steps tests repeat.
struct StorageFixture: Sendable {
    let client: PostgresClient
    let logger: Logger
    let enrollments: PostgresEnrollmentStore
    let queue: PostgresCommandQueue

    init(client: PostgresClient) {
        var logger = Logger(label: "mdm.storage-tests")
        logger.logLevel = .warning
        self.client = client
        self.logger = logger
        self.enrollments = PostgresEnrollmentStore(client: client, logger: logger)
        self.queue = PostgresCommandQueue(client: client, logger: logger)
    }

    /// Push intent for tests that only check what the outbox holds.
    static let pushIntent = PushIntent(requestID: "REQ-TEST", redriveAfter: .seconds(60))

    /// A distinct 32-byte stand-in for SHA-256 of an identity certificate.
    static func certificateHash(_ name: String) -> [UInt8] {
        let bytes = Array(name.utf8.prefix(32))
        return bytes + [UInt8](repeating: 0xA5, count: 32 - bytes.count)
    }

    /// The default certificate of a device channel.
    static func certificateHash(of identity: EnrollmentIdentity) -> [UInt8] {
        certificateHash("cert-\(identity.deviceChannelID)")
    }

    static func device(_ udid: String) -> EnrollmentIdentity {
        EnrollmentIdentity(id: udid, type: .device)
    }

    static func user(_ userID: String, of udid: String) -> EnrollmentIdentity {
        EnrollmentIdentity(id: "\(udid):\(userID)", type: .user, parentID: udid)
    }

    static func plist(_ commandUUID: String, requestType: String = "DeviceInformation") -> Data {
        Data(
            """
            <?xml version="1.0" encoding="UTF-8"?>
            <plist version="1.0"><dict><key>Command</key><dict><key>RequestType</key>\
            <string>\(requestType)</string></dict><key>CommandUUID</key><string>\(commandUUID)</string></dict></plist>
            """.utf8
        )
    }

    @discardableResult
    func authenticate(
        _ identity: EnrollmentIdentity,
        certificateHash: [UInt8]? = nil,
        serialNumber: String? = "C02TEST",
        topic: String? = "com.apple.mgmt.External.test"
    ) async throws -> BindingDecision {
        try await enrollments.authenticate(
            AuthenticateRecord(
                enrollment: identity,
                serialNumber: serialNumber,
                topic: topic,
                certificateHash: certificateHash ?? Self.certificateHash(of: identity),
                certificate: Array("DER of \(identity.id)".utf8),
                rawMessage: Data("<plist>Authenticate \(identity.id)</plist>".utf8)
            )
        )
    }

    @discardableResult
    func tokenUpdate(
        _ identity: EnrollmentIdentity,
        token: Data = Data([0xAB, 0xCD, 0x01, 0xEF]),
        unlockToken: Data? = nil,
        userShortName: String? = nil
    ) async throws -> Int {
        try await enrollments.saveTokenUpdate(
            TokenUpdateRecord(
                enrollment: identity,
                topic: "com.apple.mgmt.External.test",
                pushMagic: "magic-\(identity.id)",
                token: token,
                unlockToken: unlockToken,
                userShortName: userShortName,
                userLongName: userShortName.map { "\($0) Long" },
                rawMessage: Data("<plist>TokenUpdate \(identity.id)</plist>".utf8)
            )
        )
    }

    /// Authenticate and TokenUpdate: a pushable device channel.
    func enrollDevice(_ udid: String) async throws -> EnrollmentIdentity {
        let identity = Self.device(udid)
        try await authenticate(identity)
        try await tokenUpdate(identity)
        return identity
    }

    @discardableResult
    func enqueue(
        _ commandUUID: String,
        to identities: [EnrollmentIdentity],
        priority: Int16 = 0,
        plist: Data? = nil
    ) async throws -> EnqueueOutcome {
        try await queue.enqueue(
            NewCommand(
                commandUUID: commandUUID,
                requestType: "DeviceInformation",
                plist: plist ?? Self.plist(commandUUID),
                priority: priority
            ),
            to: identities.map(\.id),
            pushIntent: nil
        )
    }

    /// `count` commands named `prefix1`, `prefix2`, … queued for `identity` in `state`, in one
    /// statement: history or a backlog without a poll per entry.
    func insertEntries(
        for identity: EnrollmentIdentity, prefix: String, count: Int, state: String, priority: Int16 = 0
    ) async throws {
        try await client.query(
            """
            WITH commands AS (
                INSERT INTO commands (command_uuid, request_type, command)
                SELECT \(prefix) || n, 'DeviceInformation', '\\x00'::bytea FROM generate_series(1, \(count)) AS n
                RETURNING command_uuid
            )
            INSERT INTO queue_entries (enrollment_id, command_uuid, priority, state)
            SELECT \(identity.id), command_uuid, \(priority), \(state) FROM commands
            """,
            logger: logger
        )
    }

    func poll(
        _ identity: EnrollmentIdentity,
        status: String = "Idle",
        commandUUID: String? = nil,
        certificateHash: [UInt8]? = nil,
        report: Data? = nil,
        retro: Bool = false
    ) async throws -> CommandPollOutcome {
        try await queue.poll(
            CommandPoll(
                enrollmentID: identity.id,
                deviceChannelID: identity.deviceChannelID,
                certificateHash: certificateHash ?? Self.certificateHash(of: identity),
                status: status,
                commandUUID: commandUUID,
                rawReport: report ?? Data("<plist>\(status) \(commandUUID ?? "")</plist>".utf8),
                retro: retro
            )
        )
    }

    /// The CommandUUID the device gets back after reporting (`nil`: empty queue).
    func next(
        _ identity: EnrollmentIdentity,
        status: String = "Idle",
        commandUUID: String? = nil
    ) async throws -> String? {
        let outcome = try await poll(identity, status: status, commandUUID: commandUUID)
        guard case .next(let command) = outcome else {
            throw FixtureError.unexpectedOutcome(outcome)
        }
        return command?.commandUUID
    }

    /// Reports every command as it arrives (starting with Idle) and returns the delivery order.
    func drain(_ identity: EnrollmentIdentity, status: String = "Acknowledged") async throws -> [String] {
        var delivered: [String] = []
        var current = try await next(identity)
        while let commandUUID = current {
            delivered.append(commandUUID)
            current = try await next(identity, status: status, commandUUID: commandUUID)
        }
        return delivered
    }

    func count(_ query: PostgresQuery) async throws -> Int {
        guard let count = try await value(query, as: Int.self) else { throw FixtureError.noRow }
        return count
    }

    /// The first column of the first row, or `nil` without rows.
    func value<T: PostgresDecodable & Sendable>(_ query: PostgresQuery, as type: T.Type) async throws -> T? {
        for try await value in try await client.query(query, logger: logger).decode(T.self) {
            return value
        }
        return nil
    }

    func queueState(_ identity: EnrollmentIdentity, _ commandUUID: String) async throws -> String? {
        let rows = try await client.query(
            "SELECT state FROM queue_entries WHERE enrollment_id = \(identity.id) AND command_uuid = \(commandUUID)",
            logger: logger
        )
        for try await state in rows.decode(String.self) {
            return state
        }
        return nil
    }
}

enum FixtureError: Error {
    case unexpectedOutcome(CommandPollOutcome)
    case noRow
}

extension ByteBuffer {
    var bytes: [UInt8] { Array(readableBytesView) }
}
