import Foundation
import MDMStorage
import MDMTestSupport
import Testing

@Suite("PushStore: push info, outcomes and the outbox")
struct PushStoreTests {
    private static func intent(_ id: String, after: Duration = .seconds(60)) -> PushIntent {
        PushIntent(requestID: id, redriveAfter: after)
    }

    @Test func pushTargetsCoverOnlyEnrollmentsWithPushInfo() async throws {
        try await TestDatabase.withFreshClient { client in
            let storage = StorageFixture(client: client)
            let store = PostgresPushStore(client: client, logger: storage.logger)
            _ = try await storage.enrollDevice("PUSHABLE")
            try await storage.authenticate(StorageFixture.device("NO-TOKEN"))
            try await client.query(
                """
                INSERT INTO push_certificates (topic, certificate_pem, private_key, not_after)
                VALUES ('com.apple.mgmt.External.test', 'PEM', '\\x00', now())
                """
            )

            let targets = try await store.fetchPushTargets(enrollmentIDs: ["PUSHABLE", "NO-TOKEN", "MISSING"])
            #expect(targets.map(\.enrollmentID) == ["PUSHABLE"])
            let target = try #require(targets.first)
            #expect(target.topic == "com.apple.mgmt.External.test")
            #expect(target.tokenHex == "abcd01ef")
            #expect(target.pushMagic == "magic-PUSHABLE")
            #expect(target.certificateVersion != nil)
            #expect(target.unregisteredAt == nil)
        }
    }

    @Test func outcomesAreRecordedAndSettleOrDeferOutboxRows() async throws {
        try await TestDatabase.withFreshClient { client in
            let storage = StorageFixture(client: client)
            let store = PostgresPushStore(client: client, logger: storage.logger)
            for id in ["OK", "GONE", "BAD", "LATER"] { _ = try await storage.enrollDevice(id) }
            _ = try await storage.queue.recordPushIntent(
                Self.intent("REQ-1"), enrollmentIDs: ["OK", "GONE", "BAD", "LATER"])
            _ = try await storage.queue.recordPushIntent(Self.intent("REQ-2"), enrollmentIDs: ["OK"])
            let unregistered = Date(timeIntervalSince1970: 1_700_000_000)

            try await store.recordPushOutcomes(
                [
                    PushOutcomeRecord(enrollmentID: "OK", kind: .delivered, detail: "APNS-ID-1"),
                    PushOutcomeRecord(
                        enrollmentID: "GONE", kind: .unregistered, detail: "Unregistered", unregisteredAt: unregistered),
                    PushOutcomeRecord(enrollmentID: "BAD", kind: .rejected, detail: "400 BadDeviceToken"),
                    PushOutcomeRecord(enrollmentID: "LATER", kind: .failed, detail: "503 ServiceUnavailable"),
                ],
                settled: ["OK", "GONE", "BAD"].map { OwedPush(requestID: "REQ-1", enrollmentID: $0) },
                deferred: [OwedPush(requestID: "REQ-1", enrollmentID: "LATER")],
                redriveAfter: .seconds(300)
            )

            #expect(
                try await storage.value("SELECT last_push_id FROM enrollments WHERE id = 'OK'", as: String.self)
                    == "APNS-ID-1")
            #expect(
                try await storage.value("SELECT push_unregistered_at FROM enrollments WHERE id = 'GONE'", as: Date.self)
                    == unregistered)
            #expect(
                try await storage.value("SELECT push_error FROM enrollments WHERE id = 'BAD'", as: String.self)
                    == "400 BadDeviceToken")
            // REQ-2's row for OK is another request's: it stays owed.
            #expect(
                try await storage.count("SELECT count(*) FROM push_outbox WHERE enrollment_id = 'OK'") == 1)
            #expect(try await storage.count("SELECT count(*) FROM push_outbox WHERE request_id = 'REQ-1'") == 1)
            #expect(
                try await storage.count(
                    """
                    SELECT count(*) FROM push_outbox
                    WHERE enrollment_id = 'LATER' AND attempts = 1 AND not_before > now() + interval '4 minutes'
                    """) == 1)
            // An unregistered enrollment is not pushed again until a TokenUpdate.
            let gone = try await store.fetchPushTargets(enrollmentIDs: ["GONE"])
            #expect(gone.first?.unregisteredAt == unregistered)
            try await storage.tokenUpdate(StorageFixture.device("GONE"))
            #expect(try await store.fetchPushTargets(enrollmentIDs: ["GONE"]).first?.unregisteredAt == nil)
        }
    }

    @Test func duePushesAreClaimedOnceAndSpentOnesDropped() async throws {
        try await TestDatabase.withFreshClient { client in
            let storage = StorageFixture(client: client)
            let store = PostgresPushStore(client: client, logger: storage.logger)
            for id in ["A", "B", "C"] { _ = try await storage.enrollDevice(id) }
            _ = try await storage.queue.recordPushIntent(Self.intent("WAITING"), enrollmentIDs: ["A"])
            _ = try await storage.queue.recordPushIntent(Self.intent("DUE", after: .zero), enrollmentIDs: ["A", "B"])
            _ = try await storage.queue.recordPushIntent(Self.intent("SPENT", after: .zero), enrollmentIDs: ["C"])
            try await client.query("UPDATE push_outbox SET attempts = 3 WHERE request_id = 'SPENT'")

            let first = try await store.claimDuePushes(limit: 100, redriveAfter: .seconds(60), maxAttempts: 3)
            #expect(first.due.map(\.requestID) == ["DUE"])
            #expect(first.due.first.map { Set($0.enrollmentIDs) } == ["A", "B"])
            #expect(first.abandoned == 1)
            #expect(try await storage.count("SELECT count(*) FROM push_outbox WHERE request_id = 'SPENT'") == 0)

            // Claimed rows wait `redriveAfter` again; claiming is not an attempt.
            let second = try await store.claimDuePushes(limit: 100, redriveAfter: .seconds(60), maxAttempts: 3)
            #expect(second.due.isEmpty && second.abandoned == 0)
            #expect(try await storage.count("SELECT count(*) FROM push_outbox WHERE attempts > 0") == 0)

            try await store.redriveNow(requestIDs: ["WAITING"])
            let third = try await store.claimDuePushes(limit: 100, redriveAfter: .seconds(60), maxAttempts: 3)
            #expect(third.due == [DuePushes(requestID: "WAITING", enrollmentIDs: ["A"])])
        }
    }

    @Test func enqueueTagsOutboxRowsWithTheRequest() async throws {
        try await TestDatabase.withFreshClient { client in
            let storage = StorageFixture(client: client)
            _ = try await storage.enrollDevice("A")
            _ = try await storage.queue.enqueue(
                NewCommand(commandUUID: "CMD-1", requestType: "DeviceLock", plist: StorageFixture.plist("CMD-1")),
                to: ["A", "UNKNOWN"],
                pushIntent: Self.intent("REQ-ENQUEUE", after: .seconds(120))
            )
            #expect(
                try await storage.count(
                    """
                    SELECT count(*) FROM push_outbox WHERE request_id = 'REQ-ENQUEUE' AND enrollment_id = 'A'
                        AND not_before > now() + interval '100 seconds'
                    """) == 1)
            #expect(try await storage.count("SELECT count(*) FROM push_outbox") == 1)
        }
    }
}
