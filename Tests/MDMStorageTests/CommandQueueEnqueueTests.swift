import Foundation
import MDMStorage
import MDMTestSupport
import PostgresNIO
import Testing

@Suite(.enabled(if: TestDatabase.isEnabled, "set MDM_TEST_DATABASE_URL or run deploy/local/test"))
struct CommandQueueEnqueueTests {
    @Test
    func enqueueQueuesEachTargetOnceAndReportsUnknownInOrder() async throws {
        try await TestDatabase.withFreshClient { client in
            let storage = StorageFixture(client: client)
            let first = try await storage.enrollDevice("UDID-1")
            let second = try await storage.enrollDevice("UDID-2")
            let outcome = try await storage.queue.enqueue(
                NewCommand(
                    commandUUID: "CMD-1", requestType: "DeviceInformation", plist: StorageFixture.plist("CMD-1")),
                to: ["UNKNOWN-B", "UDID-2", "UNKNOWN-A", "UDID-1", "UDID-2", "UNKNOWN-B"],
                pushIntent: nil
            )
            #expect(outcome == EnqueueOutcome(queued: ["UDID-2", "UDID-1"], unknown: ["UNKNOWN-B", "UNKNOWN-A"]))
            #expect(try await storage.count("SELECT count(*) FROM commands") == 1)
            #expect(try await storage.count("SELECT count(*) FROM queue_entries WHERE command_uuid = 'CMD-1'") == 2)
            #expect(try await storage.next(first) == "CMD-1")
            #expect(try await storage.next(second) == "CMD-1")
        }
    }

    @Test
    func duplicateCommandUUIDIsRefused() async throws {
        try await TestDatabase.withFreshClient { client in
            let storage = StorageFixture(client: client)
            let first = try await storage.enrollDevice("UDID-1")
            let second = try await storage.enrollDevice("UDID-2")
            try await storage.enqueue("CMD-1", to: [first])
            await #expect(throws: StorageError.duplicateCommand("CMD-1")) {
                try await storage.enqueue("CMD-1", to: [second])
            }
            #expect(try await storage.count("SELECT count(*) FROM queue_entries") == 1)
            #expect(try await storage.next(second) == nil)
        }
    }

    @Test
    func duplicateCommandUUIDIsRefusedEvenWithoutKnownTargets() async throws {
        try await TestDatabase.withFreshClient { client in
            let storage = StorageFixture(client: client)
            let device = try await storage.enrollDevice("UDID-1")
            try await storage.enqueue("CMD-1", to: [device])
            await #expect(throws: StorageError.duplicateCommand("CMD-1")) {
                try await storage.enqueue("CMD-1", to: [StorageFixture.device("UNKNOWN")])
            }
        }
    }

    @Test
    func enqueueWithoutKnownTargetsStoresNothing() async throws {
        try await TestDatabase.withFreshClient { client in
            let storage = StorageFixture(client: client)
            let outcome = try await storage.enqueue("CMD-1", to: [StorageFixture.device("UNKNOWN")])
            #expect(outcome == EnqueueOutcome(queued: [], unknown: ["UNKNOWN"]))
            #expect(try await storage.count("SELECT count(*) FROM commands") == 0)
            // So the same CommandUUID can be enqueued once the target exists.
            let device = try await storage.enrollDevice("UNKNOWN")
            #expect(try await storage.enqueue("CMD-1", to: [device]).queued == ["UNKNOWN"])
        }
    }

    @Test
    func commandCanBeQueuedBeforeTokenUpdate() async throws {
        try await TestDatabase.withFreshClient { client in
            let storage = StorageFixture(client: client)
            let device = StorageFixture.device("UDID-1")
            try await storage.authenticate(device)
            #expect(try await storage.enqueue("CMD-1", to: [device]).queued == ["UDID-1"])
            try await storage.tokenUpdate(device)
            #expect(try await storage.next(device) == "CMD-1")
        }
    }

    @Test
    func pushIntentIsRecordedOnlyWhenAsked() async throws {
        try await TestDatabase.withFreshClient { client in
            let storage = StorageFixture(client: client)
            _ = try await storage.enrollDevice("UDID-1")
            _ = try await storage.enrollDevice("UDID-2")
            let command = { (uuid: String) in
                NewCommand(commandUUID: uuid, requestType: "DeviceLock", plist: StorageFixture.plist(uuid))
            }
            _ = try await storage.queue.enqueue(
                command("CMD-QUIET"), to: ["UDID-1", "UDID-2"], pushIntent: nil)
            #expect(try await storage.count("SELECT count(*) FROM push_outbox") == 0)

            _ = try await storage.queue.enqueue(
                command("CMD-PUSH"),
                to: ["UDID-1", "UNKNOWN", "UDID-2", "UDID-1"],
                pushIntent: StorageFixture.pushIntent
            )
            #expect(try await storage.count("SELECT count(*) FROM push_outbox") == 2)
            #expect(try await storage.count("SELECT count(DISTINCT enrollment_id) FROM push_outbox") == 2)
        }
    }

    @Test
    func recordPushIntentReportsUnknownIDs() async throws {
        try await TestDatabase.withFreshClient { client in
            let storage = StorageFixture(client: client)
            _ = try await storage.enrollDevice("UDID-1")
            let unknown = try await storage.queue.recordPushIntent(
                StorageFixture.pushIntent, enrollmentIDs: ["X", "UDID-1", "Y", "X"])
            #expect(unknown == ["X", "Y"])
            #expect(try await storage.count("SELECT count(*) FROM push_outbox WHERE enrollment_id = 'UDID-1'") == 1)
        }
    }

    @Test
    func enqueueReachesOneHundredThousandEnrollmentsInOneStatement() async throws {
        try await TestDatabase.withFreshClient { client in
            let storage = StorageFixture(client: client)
            let targetCount = 100_000
            try await client.query(
                """
                WITH devices AS (
                    INSERT INTO devices (id) SELECT 'BULK-' || n FROM generate_series(1, \(targetCount)) AS n
                    RETURNING id
                )
                INSERT INTO enrollments (id, device_id, type, enabled) SELECT id, id, 'Device', true FROM devices
                """
            )
            let targets = (1...targetCount).map { "BULK-\($0)" }
            let outcome = try await storage.queue.enqueue(
                NewCommand(
                    commandUUID: "CMD-BULK", requestType: "DeviceInformation", plist: StorageFixture.plist("CMD-BULK")),
                to: targets + ["MISSING"],
                pushIntent: StorageFixture.pushIntent
            )
            #expect(outcome.queued == targets)
            #expect(outcome.unknown == ["MISSING"])
            #expect(
                try await storage.count("SELECT count(*) FROM queue_entries WHERE command_uuid = 'CMD-BULK'")
                    == targetCount)
            #expect(try await storage.count("SELECT count(*) FROM push_outbox") == targetCount)
            #expect(try await storage.queueState(StorageFixture.device("BULK-99999"), "CMD-BULK") == "pending")
        }
    }
}
