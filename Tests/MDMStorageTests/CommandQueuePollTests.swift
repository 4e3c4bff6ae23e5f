import Foundation
import Logging
import MDMProtocol
import MDMStorage
import MDMTestSupport
import NIOCore
import PostgresNIO
import Testing

@Suite(.enabled(if: TestDatabase.isEnabled, "set MDM_TEST_DATABASE_URL or run deploy/local/test"))
struct CommandQueuePollTests {
    @Test
    func idleReturnsTheFirstQueuedCommand() async throws {
        try await TestDatabase.withFreshClient { client in
            let storage = StorageFixture(client: client)
            let device = try await storage.enrollDevice("UDID-1")
            #expect(try await storage.next(device) == nil)
            try await storage.enqueue("CMD-1", to: [device])
            try await storage.enqueue("CMD-2", to: [device])
            #expect(try await storage.next(device) == "CMD-1")
            // Idle stores nothing: the same command again.
            #expect(try await storage.next(device) == "CMD-1")
            #expect(try await storage.count("SELECT count(*) FROM command_results") == 0)
        }
    }

    @Test
    func commandsEnqueuedInTheSameMillisecondAreDeliveredInEnqueueOrder() async throws {
        try await TestDatabase.withFreshClient { client in
            let storage = StorageFixture(client: client)
            let device = try await storage.enrollDevice("UDID-1")
            let uuids = ["CMD-E", "CMD-B", "CMD-D", "CMD-A", "CMD-C"]
            for uuid in uuids {
                try await storage.enqueue(uuid, to: [device])
            }
            // Equal timestamps leave the order to the sequence alone.
            try await client.query("UPDATE queue_entries SET created_at = '2024-01-01T00:00:00Z'")
            #expect(try await storage.drain(device) == uuids)
        }
    }

    @Test
    func higherPriorityIsDeliveredFirst() async throws {
        try await TestDatabase.withFreshClient { client in
            let storage = StorageFixture(client: client)
            let device = try await storage.enrollDevice("UDID-1")
            try await storage.enqueue("LOW-1", to: [device], priority: -1)
            try await storage.enqueue("NORMAL-1", to: [device])
            try await storage.enqueue("HIGH-1", to: [device], priority: 10)
            try await storage.enqueue("NORMAL-2", to: [device])
            try await storage.enqueue("HIGH-2", to: [device], priority: 10)
            #expect(try await storage.drain(device) == ["HIGH-1", "HIGH-2", "NORMAL-1", "NORMAL-2", "LOW-1"])
        }
    }

    @Test(arguments: ["Acknowledged", "Error", "CommandFormatError"])
    func finalStatusStoresResultRetiresEntryAndReturnsNext(status: String) async throws {
        try await TestDatabase.withFreshClient { client in
            let storage = StorageFixture(client: client)
            let device = try await storage.enrollDevice("UDID-1")
            try await storage.enqueue("CMD-1", to: [device])
            try await storage.enqueue("CMD-2", to: [device])
            let report = Data("bplist00\u{0}\u{1}report".utf8)
            let outcome = try await storage.poll(device, status: status, commandUUID: "CMD-1", report: report)
            guard case .next(let next) = outcome else {
                Issue.record("refused: \(outcome)")
                return
            }
            #expect(next?.commandUUID == "CMD-2")
            #expect(try await storage.queueState(device, "CMD-1") == "done")
            #expect(
                try await storage.value(
                    "SELECT result FROM command_results WHERE enrollment_id = 'UDID-1' AND command_uuid = 'CMD-1'",
                    as: Data.self
                ) == report
            )
            #expect(
                try await storage.value(
                    "SELECT status FROM command_results WHERE command_uuid = 'CMD-1'", as: String.self)
                    == status
            )
        }
    }

    @Test
    func notNowDefersOnlyAnsweredEntriesUntilTheNextIdle() async throws {
        try await TestDatabase.withFreshClient { client in
            let storage = StorageFixture(client: client)
            let device = try await storage.enrollDevice("UDID-1")
            try await storage.enqueue("CMD-A", to: [device])
            try await storage.enqueue("CMD-B", to: [device])
            try await storage.enqueue("CMD-C", to: [device])

            #expect(try await storage.next(device) == "CMD-A")
            // After a NotNow, only entries never answered with NotNow qualify.
            #expect(try await storage.next(device, status: "NotNow", commandUUID: "CMD-A") == "CMD-B")
            #expect(try await storage.next(device, status: "NotNow", commandUUID: "CMD-B") == "CMD-C")
            #expect(try await storage.next(device, status: "NotNow", commandUUID: "CMD-C") == nil)
            // Idle makes NotNow entries eligible again, in order.
            #expect(try await storage.next(device) == "CMD-A")
            #expect(try await storage.next(device, status: "NotNow", commandUUID: "CMD-A") == nil)
            // So does a final status.
            #expect(try await storage.next(device) == "CMD-A")
            #expect(try await storage.next(device, status: "Acknowledged", commandUUID: "CMD-A") == "CMD-B")
            #expect(try await storage.next(device, status: "Acknowledged", commandUUID: "CMD-B") == "CMD-C")

            #expect(
                try await storage.value(
                    "SELECT not_now_count FROM queue_entries WHERE command_uuid = 'CMD-C'",
                    as: Int.self
                ) == 1
            )
            #expect(
                try await storage.count(
                    """
                    SELECT count(*) FROM queue_entries
                    WHERE command_uuid = 'CMD-A' AND not_now_count = 2 AND not_now_at IS NOT NULL
                    """
                ) == 1
            )
            #expect(try await storage.count("SELECT count(*) FROM command_results") == 2)
        }
    }

    @Test
    func notNowKeepsTheFirstNotNowTime() async throws {
        try await TestDatabase.withFreshClient { client in
            let storage = StorageFixture(client: client)
            let device = try await storage.enrollDevice("UDID-1")
            try await storage.enqueue("CMD-A", to: [device])
            _ = try await storage.next(device, status: "NotNow", commandUUID: "CMD-A")
            try await client.query("UPDATE queue_entries SET not_now_at = '2024-01-01T00:00:00Z'")
            _ = try await storage.next(device, status: "NotNow", commandUUID: "CMD-A")
            #expect(
                try await storage.count(
                    "SELECT count(*) FROM queue_entries WHERE not_now_at = '2024-01-01T00:00:00Z' AND not_now_count = 2"
                ) == 1
            )
        }
    }

    @Test
    func reportForUnknownCommandIsAcceptedAndReturnsNext() async throws {
        try await TestDatabase.withFreshClient { client in
            let storage = StorageFixture(client: client)
            let device = try await storage.enrollDevice("UDID-1")
            try await storage.enqueue("CMD-1", to: [device])
            #expect(try await storage.next(device, status: "Acknowledged", commandUUID: "NO-SUCH-COMMAND") == "CMD-1")
            #expect(try await storage.next(device, status: "NotNow", commandUUID: "NO-SUCH-COMMAND") == "CMD-1")
            #expect(try await storage.count("SELECT count(*) FROM command_results") == 0)
        }
    }

    @Test
    func reportForRetiredEntryIsAcceptedAndStoresNothing() async throws {
        try await TestDatabase.withFreshClient { client in
            let storage = StorageFixture(client: client)
            let device = try await storage.enrollDevice("UDID-1")
            try await storage.enqueue("CMD-1", to: [device])
            try await storage.enqueue("CMD-2", to: [device])
            #expect(try await storage.next(device, status: "Acknowledged", commandUUID: "CMD-1") == "CMD-2")
            #expect(try await storage.next(device, status: "Error", commandUUID: "CMD-1") == "CMD-2")
            #expect(
                try await storage.value(
                    "SELECT status FROM command_results WHERE command_uuid = 'CMD-1'", as: String.self)
                    == "Acknowledged"
            )
        }
    }

    @Test
    func commandBytesAreReturnedByteForByte() async throws {
        try await TestDatabase.withFreshClient { client in
            let storage = StorageFixture(client: client)
            let device = try await storage.enrollDevice("UDID-1")
            var plist = Array("bplist00".utf8)
            plist += (0...255).map { UInt8($0) } + (0...255).reversed().map { UInt8($0) }
            try await storage.enqueue("CMD-BINARY", to: [device], plist: Data(plist))
            let outcome = try await storage.poll(device)
            guard case .next(let command) = outcome, let command else {
                Issue.record("no command: \(outcome)")
                return
            }
            #expect(command.commandUUID == "CMD-BINARY")
            #expect(command.plist.bytes == plist)
        }
    }

    @Test
    func unboundCertificateIsRefusedAndNothingIsStored() async throws {
        try await TestDatabase.withFreshClient { client in
            let storage = StorageFixture(client: client)
            let device = try await storage.enrollDevice("UDID-1")
            let other = try await storage.enrollDevice("UDID-2")
            try await storage.enqueue("CMD-1", to: [device])
            try await client.query("UPDATE enrollments SET last_seen_at = '2020-01-01Z'")

            let stranger = StorageFixture.certificateHash("stranger")
            for status in ["Idle", "Acknowledged", "NotNow"] {
                let unbound = try await storage.poll(
                    device, status: status, commandUUID: "CMD-1", certificateHash: stranger)
                #expect(unbound == .refused(.notBound))
                let foreign = try await storage.poll(
                    device,
                    status: status,
                    commandUUID: "CMD-1",
                    certificateHash: StorageFixture.certificateHash(of: other)
                )
                #expect(foreign == .refused(.boundToAnotherDevice))
            }
            #expect(try await storage.queueState(device, "CMD-1") == "pending")
            #expect(try await storage.count("SELECT count(*) FROM command_results") == 0)
            #expect(try await storage.count("SELECT count(*) FROM queue_entries WHERE not_now_count > 0") == 0)
            #expect(try await storage.count("SELECT count(*) FROM enrollments WHERE last_seen_at > '2020-01-01Z'") == 0)
        }
    }

    @Test
    func pollMovesLastSeen() async throws {
        try await TestDatabase.withFreshClient { client in
            let storage = StorageFixture(client: client)
            let device = try await storage.enrollDevice("UDID-1")
            try await client.query("UPDATE enrollments SET last_seen_at = '2020-01-01Z'")
            _ = try await storage.next(device)
            #expect(try await storage.count("SELECT count(*) FROM enrollments WHERE last_seen_at > '2020-01-01Z'") == 1)
        }
    }

    /// A device draining its queue polls back to back: within a second of the last move,
    /// `last_seen_at` stays put and the enrollment row gets no new version.
    @Test
    func backToBackPollsMoveLastSeenOncePerSecond() async throws {
        try await TestDatabase.withFreshClient { client in
            let storage = StorageFixture(client: client)
            let device = try await storage.enrollDevice("UDID-1")
            // Seen "just now": an hour ahead, so however slowly this machine reaches the poll,
            // the last move is less than a second old when the poll looks at it.
            try await client.query("UPDATE enrollments SET last_seen_at = now() + interval '1 hour'")
            let version = PostgresQuery(unsafeSQL: "SELECT xmin::text FROM enrollments WHERE id = 'UDID-1'")
            let before = try await storage.value(version, as: String.self)
            _ = try await storage.next(device)
            #expect(try await storage.value(version, as: String.self) == before, "no new row version")
            try await client.query("UPDATE enrollments SET last_seen_at = now() - interval '2 seconds'")
            let stale = try await storage.value(version, as: String.self)
            _ = try await storage.next(device)
            #expect(try await storage.value(version, as: String.self) != stale)
            #expect(
                try await storage.count(
                    "SELECT count(*) FROM enrollments WHERE last_seen_at > now() - interval '1 second'") == 1)
        }
    }

    @Test
    func retroPollBindsOnFirstSight() async throws {
        try await TestDatabase.withFreshClient { client in
            let storage = StorageFixture(client: client)
            // A migrated device with an enrollment and a queue, but no identity binding yet.
            try await client.query("INSERT INTO devices (id) VALUES ('MIGRATED')")
            try await client.query(
                "INSERT INTO enrollments (id, device_id, type, enabled) VALUES ('MIGRATED', 'MIGRATED', 'Device', true)"
            )
            let device = StorageFixture.device("MIGRATED")
            try await storage.enqueue("CMD-1", to: [device])

            #expect(try await storage.poll(device) == .refused(.notBound))
            let outcome = try await storage.poll(device, status: "Idle", retro: true)
            guard case .next(let command) = outcome else {
                Issue.record("refused: \(outcome)")
                return
            }
            #expect(command?.commandUUID == "CMD-1")
            #expect(try await storage.next(device, status: "Acknowledged", commandUUID: "CMD-1") == nil)
            #expect(try await storage.count("SELECT count(*) FROM command_results") == 1)
            // Bound now: another certificate is not bound on sight.
            let other = try await storage.poll(
                device, certificateHash: StorageFixture.certificateHash("other"), retro: true)
            #expect(other == .refused(.notBound))
        }
    }

    @Test
    func userChannelHasItsOwnQueue() async throws {
        try await TestDatabase.withFreshClient { client in
            let storage = StorageFixture(client: client)
            let device = try await storage.enrollDevice("UDID-1")
            let user = StorageFixture.user("501", of: "UDID-1")
            try await storage.tokenUpdate(user)
            try await storage.enqueue("CMD-DEVICE", to: [device])
            try await storage.enqueue("CMD-USER", to: [user])
            // The user channel presents the device channel's certificate.
            #expect(try await storage.drain(user) == ["CMD-USER"])
            #expect(try await storage.drain(device) == ["CMD-DEVICE"])
        }
    }

    @Test
    func pendingEntryIsFoundBehindAThousandRetiredOnes() async throws {
        try await TestDatabase.withFreshClient { client in
            let storage = StorageFixture(client: client)
            let device = try await storage.enrollDevice("UDID-1")
            try await storage.insertEntries(for: device, prefix: "OLD-", count: 1000, state: "done", priority: 100)
            try await storage.enqueue("CMD-NEW", to: [device])
            #expect(try await storage.next(device) == "CMD-NEW")
            #expect(try await storage.next(device, status: "Acknowledged", commandUUID: "CMD-NEW") == nil)
        }
    }

    @Test
    func nextCommandLookupUsesThePendingIndex() async throws {
        try await TestDatabase.withFreshClient { client in
            let storage = StorageFixture(client: client)
            let device = try await storage.enrollDevice("UDID-1")
            try await storage.insertEntries(for: device, prefix: "OLD-", count: 2000, state: "done")
            try await storage.enqueue("CMD-NEW", to: [device])
            try await client.query("ANALYZE queue_entries")
            let plan = try await Self.plan(
                of: PollStatement<IdlePoll>.sql, status: "Idle", commandUUID: nil, generic: false, client: client)
            #expect(plan.contains { $0.contains("queue_entries_pending_idx") }, "\(plan)")
        }
    }

    /// A report names its command: the poll must find that entry by its key, whatever the
    /// statistics say, not by reading the device's pending entries until the CommandUUID
    /// matches (a drain of a long queue would slow down with its length). Checked on the
    /// generic plan, which PostgreSQL settles on for a statement prepared once per connection.
    @Test(arguments: [PollKind.final, .notNow])
    func reportedEntryIsFoundByItsKey(kind: PollKind) async throws {
        try await TestDatabase.withFreshClient { client in
            let storage = StorageFixture(client: client)
            let device = try await storage.enrollDevice("UDID-1")
            // Statistics taken when the history was all done; then a backlog arrives.
            try await storage.insertEntries(for: device, prefix: "OLD-", count: 2000, state: "done")
            try await client.query("ANALYZE queue_entries")
            try await storage.insertEntries(for: device, prefix: "PENDING-", count: 2000, state: "pending")
            let (sql, status) =
                kind == .final
                ? (PollStatement<FinalPoll>.sql, "Acknowledged") : (PollStatement<NotNowPoll>.sql, "NotNow")
            let plan = try await Self.plan(
                of: sql, status: status, commandUUID: "PENDING-1500", generic: true, client: client)
            let byKey = plan.filter { $0.contains("Index Scan using queue_entries_pkey on queue_entries") }
            let byPending = plan.filter { $0.contains("queue_entries_pending_idx") }
            #expect(byKey.count == 1, "the reported entry is looked up by its key:\n\(plan.joined(separator: "\n"))")
            #expect(byPending.count == 1, "only the next-command lookup reads the pending index")
        }
    }

    /// Decision 0005: only an `Idle` poll without a webhook event skips the WAL flush, and only
    /// for its own transaction.
    @Test(arguments: [
        ("Idle", false, "off"), ("Acknowledged", false, "on"), ("NotNow", false, "on"), ("Idle", true, "on"),
    ])
    func onlyAPlainIdlePollCommitsWithoutWaitingForTheFlush(status: String, webhook: Bool, expected: String)
        async throws
    {
        try await TestDatabase.withFreshClient { client in
            let storage = StorageFixture(client: client)
            let device = try await storage.enrollDevice("UDID-1")
            try await storage.enqueue("CMD-1", to: [device])
            let poll = CommandPoll(
                enrollmentID: "UDID-1",
                deviceChannelID: "UDID-1",
                certificateHash: StorageFixture.certificateHash(of: device),
                status: status,
                commandUUID: status == "Idle" ? nil : "CMD-1",
                rawReport: Data("<plist/>".utf8),
                retro: false
            )
            let event = WebhookEventRecord(
                eventID: UUID(), enrollmentID: "UDID-1", topic: "mdm.Connect", body: Array("{}".utf8))
            let (inside, after) = try await client.withConnection { connection in
                // The test server runs with the flush off; this session (of this test's own
                // pool) waits for it.
                try await connection.query("SET synchronous_commit TO on", logger: storage.logger)
                try await connection.query("BEGIN", logger: storage.logger)
                switch PollKind(ReportStatus(status)) {
                case .idle: try await Self.run(IdlePoll.self, poll, event: webhook ? event : nil, on: connection)
                case .notNow: try await Self.run(NotNowPoll.self, poll, event: webhook ? event : nil, on: connection)
                case .final: try await Self.run(FinalPoll.self, poll, event: webhook ? event : nil, on: connection)
                }
                let inside = try await Self.synchronousCommit(connection, logger: storage.logger)
                try await connection.query("COMMIT", logger: storage.logger)
                return (inside, try await Self.synchronousCommit(connection, logger: storage.logger))
            }
            #expect(inside == expected)
            #expect(after == "on", "the setting ends with its transaction")
            #expect(try await storage.queueState(device, "CMD-1") == (status == "Acknowledged" ? "done" : "pending"))
        }
    }

    /// `EXPLAIN` of a poll statement prepared with its parameter types, for device UDID-1, on the
    /// generic plan or (as for a statement's first executions) a plan for these values.
    static func plan(of sql: String, status: String, commandUUID: String?, generic: Bool, client: PostgresClient)
        async throws -> [String]
    {
        let logger = Logger(label: "test")
        let types = PollStatement<FinalPoll>.bindingDataTypes.map { "\($0)" }.joined(separator: ", ")
        return try await client.withConnection { connection in
            try await connection.query(PostgresQuery(unsafeSQL: "PREPARE poll(\(types)) AS " + sql), logger: logger)
            if generic {
                try await connection.query("SET plan_cache_mode TO force_generic_plan", logger: logger)
            }
            let uuid = commandUUID.map { "'\($0)'" } ?? "NULL"
            let rows = try await connection.query(
                PostgresQuery(
                    unsafeSQL: "EXPLAIN EXECUTE poll('UDID-1', 'UDID-1', '\\x00', '\(status)', \(uuid), '\\x00')"),
                logger: logger)
            var lines: [String] = []
            for try await line in rows.decode(String.self) { lines.append(line) }
            return lines
        }
    }

    /// Executes the poll statement of `kind`, recording `event` when given.
    static func run<Kind: PollKindStatements>(
        _ kind: Kind.Type, _ poll: CommandPoll, event: WebhookEventRecord?, on connection: PostgresConnection
    ) async throws {
        let logger = Logger(label: "test")
        let statement = PollStatement<Kind>(poll)
        if let event {
            for try await _ in try await connection.execute(
                PollWebhookStatement(statement, event: event), logger: logger)
            {}
        } else {
            for try await _ in try await connection.execute(statement, logger: logger) {}
        }
    }

    static func synchronousCommit(_ connection: PostgresConnection, logger: Logger) async throws -> String {
        let rows = try await connection.query("SHOW synchronous_commit", logger: logger)
        for try await value in rows.decode(String.self) {
            return value
        }
        return ""
    }
}
