import Foundation
import Logging
import MDMStorage
import MDMTestSupport
import PostgresNIO

/// Measures the command queue's statements directly against PostgreSQL (no HTTP): device polls
/// per second from 16 concurrent tasks, with an empty history, with 1,000 acknowledged entries
/// per device, and with webhook events recorded (no history), and the time to enqueue one
/// command to 100,000 enrollments.
///
/// Needs `MDM_TEST_DATABASE_URL` (a superuser URL; a fresh database is created and dropped).
/// Build in release: `swift run -c release StorageBenchmark`.
@main
struct StorageBenchmark {
    static let concurrency = 16
    static let devices = 256
    static let commandsPerDevice = 40
    static let idlePolls = 40_000
    static let fanOutTargets = 100_000

    static func main() async throws {
        var database = try await TestDatabase.create()
        database.configuration.options.maximumConnections = concurrency
        print("database: \(database.name)")
        do {
            try await database.withClient { client in
                try await run(client: client)
            }
        } catch {
            try? await database.drop()
            throw error
        }
        try await database.drop()
    }

    static func run(client: PostgresClient) async throws {
        var logger = Logger(label: "mdm.storage-benchmark")
        logger.logLevel = .warning
        let queue = PostgresCommandQueue(client: client, logger: logger)

        try await createDevices(prefix: "FRESH", count: devices, client: client)
        try await createDevices(prefix: "AGED", count: devices, client: client)
        try await createDevices(prefix: "HOOK", count: devices, client: client)
        try await addHistory(prefix: "AGED", entriesPerDevice: 1_000, client: client)
        for prefix in ["FRESH", "AGED", "HOOK"] {
            let ids = (1...devices).map { "\(prefix)-\($0)" }
            for index in 1...commandsPerDevice {
                let uuid = "\(prefix)-CMD-\(index)"
                let command = NewCommand(commandUUID: uuid, requestType: "DeviceInformation", plist: plist(uuid))
                _ = try await queue.enqueue(command, to: ids, pushIntent: nil)
            }
        }
        try await client.query("VACUUM ANALYZE")

        for prefix in ["FRESH", "AGED", "HOOK"] {
            let history = prefix == "AGED" ? "1,000" : "0"
            let webhook = prefix == "HOOK"
            let label = "history \(history)" + (webhook ? ", webhook events recorded" : "")
            let idle = try await measure(polls: idlePolls) { task, index in
                let device = "\(prefix)-\((index * concurrency + task) % devices + 1)"
                return try await queue.poll(report(device: device, status: "Idle", commandUUID: nil, webhook: webhook))
            }
            print("poll Idle -> next command, \(label): \(rate(idle))")
            let acknowledged = try await measure(polls: devices * commandsPerDevice) { task, index in
                // Each task owns devices task, task+16, …; it acknowledges their queues in turn.
                let perTask = devices / concurrency
                let device = "\(prefix)-\(task + (index % perTask) * concurrency + 1)"
                let uuid = "\(prefix)-CMD-\(index / perTask + 1)"
                return try await queue.poll(
                    report(device: device, status: "Acknowledged", commandUUID: uuid, webhook: webhook))
            }
            print("poll Acknowledged -> retire + next, \(label): \(rate(acknowledged))")
        }
        let outbox = try await client.query("SELECT count(*)::int FROM webhook_events").decode(Int.self)
            .reduce(0, +)
        print("webhook events recorded: \(outbox)")

        try await createDevices(prefix: "FAN", count: fanOutTargets, client: client)
        try await client.query("VACUUM ANALYZE")
        let targets = (1...fanOutTargets).map { "FAN-\($0)" }
        for (attempt, pushIntent) in [(1, true), (2, true), (3, false)] {
            let uuid = "FAN-CMD-\(attempt)"
            let command = NewCommand(commandUUID: uuid, requestType: "DeviceLock", plist: plist(uuid))
            let start = ContinuousClock.now
            let outcome = try await queue.enqueue(
                command, to: targets,
                pushIntent: pushIntent ? PushIntent(requestID: "BENCH", redriveAfter: .seconds(60)) : nil)
            let elapsed = ContinuousClock.now - start
            print(
                "enqueue 1 command to \(outcome.queued.count) enrollments (push intent: \(pushIntent)): "
                    + "\(milliseconds(elapsed)) ms"
            )
        }
    }

    /// Runs `polls` polls across `concurrency` tasks; returns (polls, elapsed).
    static func measure(
        polls: Int,
        _ poll: @escaping @Sendable (_ task: Int, _ index: Int) async throws -> CommandPollOutcome
    ) async throws -> (Int, Duration) {
        let start = ContinuousClock.now
        let perTask = polls / concurrency
        try await withThrowingTaskGroup(of: Void.self) { group in
            for task in 0..<concurrency {
                group.addTask {
                    for index in 0..<perTask {
                        guard case .next = try await poll(task, index) else {
                            throw BenchmarkError.refused
                        }
                    }
                }
            }
            try await group.waitForAll()
        }
        return (perTask * concurrency, ContinuousClock.now - start)
    }

    static func createDevices(prefix: String, count: Int, client: PostgresClient) async throws {
        try await client.query(
            """
            WITH devices AS (
                INSERT INTO devices (id) SELECT \(prefix) || '-' || n FROM generate_series(1, \(count)) AS n
                RETURNING id
            ),
            bindings AS (
                INSERT INTO certificate_bindings (sha256, device_id)
                SELECT convert_to(rpad(id, 32, '#'), 'UTF8'), id FROM devices
            )
            INSERT INTO enrollments (id, device_id, type, enabled) SELECT id, id, 'Device', true FROM devices
            """
        )
    }

    /// Acknowledged entries with their results, as a long-lived device accumulates them.
    static func addHistory(prefix: String, entriesPerDevice: Int, client: PostgresClient) async throws {
        try await client.query(
            """
            INSERT INTO commands (command_uuid, request_type, command)
            SELECT \(prefix) || '-HISTORY-' || n, 'DeviceInformation', '\\x00'::bytea
            FROM generate_series(1, \(entriesPerDevice)) AS n
            """
        )
        try await client.query(
            """
            WITH entries AS (
                INSERT INTO queue_entries (enrollment_id, command_uuid, state)
                SELECT e.id, c.command_uuid, 'done'
                FROM enrollments e CROSS JOIN commands c
                WHERE e.id LIKE \(prefix + "-%") AND c.command_uuid LIKE \(prefix + "-HISTORY-%")
                RETURNING enrollment_id, command_uuid
            )
            INSERT INTO command_results (enrollment_id, command_uuid, status, result)
            SELECT enrollment_id, command_uuid, 'Acknowledged', '\\x00'::bytea FROM entries
            """
        )
    }

    static func report(device: String, status: String, commandUUID: String?, webhook: Bool = false) -> CommandPoll {
        let hash = Array(device.utf8) + [UInt8](repeating: UInt8(ascii: "#"), count: 32 - device.utf8.count)
        let raw = Data("<plist><dict><key>Status</key><string>\(status)</string></dict></plist>".utf8)
        return CommandPoll(
            enrollmentID: device,
            deviceChannelID: device,
            certificateHash: hash,
            status: status,
            commandUUID: commandUUID,
            rawReport: raw,
            retro: false,
            webhookEvent: webhook ? event(device: device, status: status, commandUUID: commandUUID, raw: raw) : nil
        )
    }

    /// An `mdm.Connect` event of a realistic size, as WebhookEventRenderer would render it (the
    /// renderer itself is not measured here).
    static func event(device: String, status: String, commandUUID: String?, raw: Data) -> WebhookEventRecord {
        let payload = (raw + Data(repeating: 0x20, count: 400)).base64EncodedString()
        let body =
            #"{"acknowledge_event":{"command_uuid":"\#(commandUUID ?? "")","ids":{"id":"\#(device)","type":"Device"},"#
            + #""raw_payload":"\#(payload)","status":"\#(status)","udid":"\#(device)"},"#
            + #""created_at":"2026-01-01T00:00:00.123456Z","event_id":"\#(UUID().uuidString.lowercased())","#
            + #""topic":"mdm.Connect"}"#
        return WebhookEventRecord(eventID: UUID(), enrollmentID: device, topic: "mdm.Connect", body: Array(body.utf8))
    }

    static func plist(_ uuid: String) -> Data {
        Data("<plist><dict><key>CommandUUID</key><string>\(uuid)</string></dict></plist>".utf8)
    }

    static func rate(_ measurement: (Int, Duration)) -> String {
        let (polls, elapsed) = measurement
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        return "\(polls) polls in \(milliseconds(elapsed)) ms = \(Int(Double(polls) / seconds)) statements/s"
    }

    static func milliseconds(_ duration: Duration) -> Int {
        Int(duration.components.seconds * 1_000 + duration.components.attoseconds / 1_000_000_000_000_000)
    }
}

enum BenchmarkError: Error {
    case refused
}
