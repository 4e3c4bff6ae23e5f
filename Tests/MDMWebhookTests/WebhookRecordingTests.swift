import Foundation
import MDMProtocol
import MDMStorage
import MDMTestSupport
import MDMWebhook
import PostgresNIO
import Testing

/// Events are recorded by the statement that makes their change, and only when it is made.
@Suite(
    "Webhook events recorded with their change",
    .enabled(if: TestDatabase.isEnabled, "set MDM_TEST_DATABASE_URL or run deploy/local/test")
)
struct WebhookRecordingTests {
    static let renderer = WebhookEventRenderer()

    static func checkin(_ entries: [String: Any]) throws -> CheckinRequest {
        try CheckinRequest.decode(
            try PropertyListSerialization.data(fromPropertyList: entries, format: .xml, options: 0))
    }

    static func hash(_ name: String) -> [UInt8] {
        Array(name.utf8.prefix(32)) + [UInt8](repeating: 0x5A, count: 32 - min(32, name.utf8.count))
    }

    /// Authenticate with an event, as CheckinHandler does.
    static func authenticate(_ udid: String, hash: [UInt8], store: PostgresEnrollmentStore) async throws
        -> BindingDecision
    {
        let request = try checkin(["MessageType": "Authenticate", "UDID": udid, "Topic": "com.apple.mgmt.t"])
        return try await store.authenticate(
            AuthenticateRecord(
                enrollment: request.enrollment,
                serialNumber: nil,
                topic: "com.apple.mgmt.t",
                certificateHash: hash,
                certificate: [1, 2, 3],
                rawMessage: request.raw,
                webhookEvent: renderer.checkinEvent(request)
            )
        )
    }

    static func tokenUpdate(_ udid: String, store: PostgresEnrollmentStore) async throws -> Int {
        let request = try checkin([
            "MessageType": "TokenUpdate", "UDID": udid, "Topic": "com.apple.mgmt.t", "PushMagic": "m",
            "Token": Data([1, 2]),
        ])
        return try await store.saveTokenUpdate(
            TokenUpdateRecord(
                enrollment: request.enrollment,
                topic: "com.apple.mgmt.t",
                pushMagic: "m",
                token: Data([1, 2]),
                unlockToken: nil,
                userShortName: nil,
                userLongName: nil,
                rawMessage: request.raw,
                webhookEvent: renderer.checkinEvent(request)
            )
        )
    }

    /// Topics and parsed bodies of an enrollment's events, in order.
    static func events(_ enrollmentID: String, client: PostgresClient) async throws -> [(String, [String: Any])] {
        var events: [(String, [String: Any])] = []
        let rows = try await client.query(
            "SELECT topic, body FROM webhook_events WHERE enrollment_id = \(enrollmentID) ORDER BY id",
            logger: WebhookTest.logger
        )
        for try await (topic, body) in rows.decode((String, Data).self) {
            let json = try #require(try JSONSerialization.jsonObject(with: body) as? [String: Any])
            events.append((topic, json))
        }
        return events
    }

    @Test func tokenUpdateEventsCarryTheTallyTheirStatementSet() async throws {
        try await TestDatabase.withFreshClient { client in
            let store = PostgresEnrollmentStore(client: client, logger: WebhookTest.logger)
            #expect(try await Self.authenticate("REC-1", hash: Self.hash("REC-1"), store: store) == .allowed)
            #expect(try await Self.tokenUpdate("REC-1", store: store) == 1)
            #expect(try await Self.tokenUpdate("REC-1", store: store) == 2)
            let events = try await Self.events("REC-1", client: client)
            #expect(events.map(\.0) == ["mdm.Authenticate", "mdm.TokenUpdate", "mdm.TokenUpdate"])
            let tallies = events.compactMap { ($0.1["checkin_event"] as? [String: Any])?["token_update_tally"] as? Int }
            #expect(tallies == [1, 2])
            #expect(events[0].1["topic"] as? String == "mdm.Authenticate")
        }
    }

    @Test func refusedOrFailedChangesRecordNoEvent() async throws {
        try await TestDatabase.withFreshClient { (client: PostgresClient) async throws in
            let store = PostgresEnrollmentStore(client: client, logger: WebhookTest.logger)
            let shared = Self.hash("SHARED")
            #expect(try await Self.authenticate("REC-A", hash: shared, store: store) == .allowed)
            // Certificate re-use: nothing changes, so nothing is recorded.
            #expect(try await Self.authenticate("REC-B", hash: shared, store: store) == .boundToAnotherDevice)
            #expect(try await Self.events("REC-B", client: client).isEmpty)
            // TokenUpdate before Authenticate fails and records nothing.
            await #expect(throws: StorageError.unknownDevice("REC-C")) {
                try await Self.tokenUpdate("REC-C", store: store)
            }
            #expect(try await Self.events("REC-C", client: client).isEmpty)
        }
    }

    @Test func pollRecordsEveryAllowedReportAndNothingForARefusedOne() async throws {
        try await TestDatabase.withFreshClient { client in
            let store = PostgresEnrollmentStore(client: client, logger: WebhookTest.logger)
            let queue = PostgresCommandQueue(client: client, logger: WebhookTest.logger)
            #expect(try await Self.authenticate("REC-P", hash: Self.hash("REC-P"), store: store) == .allowed)
            for (status, hash) in [
                ("Idle", Self.hash("REC-P")), ("Idle", Self.hash("WRONG")), ("NotNow", Self.hash("REC-P")),
            ] {
                var entries: [String: Any] = ["Status": status, "UDID": "REC-P"]
                if status == "NotNow" { entries["CommandUUID"] = "C-1" }
                let raw = try PropertyListSerialization.data(fromPropertyList: entries, format: .xml, options: 0)
                let report = try CommandReport.decode(raw)
                let outcome = try await queue.poll(
                    CommandPoll(
                        enrollmentID: "REC-P",
                        deviceChannelID: "REC-P",
                        certificateHash: hash,
                        status: status,
                        commandUUID: report.commandUUID,
                        rawReport: raw,
                        retro: false,
                        webhookEvent: Self.renderer.acknowledgeEvent(report)
                    )
                )
                #expect((outcome == .next(nil)) == (hash == Self.hash("REC-P")))
            }
            let events = try await Self.events("REC-P", client: client)
            #expect(events.map(\.0) == ["mdm.Authenticate", "mdm.Connect", "mdm.Connect"])
            let statuses = events.compactMap { ($0.1["acknowledge_event"] as? [String: Any])?["status"] as? String }
            #expect(statuses == ["Idle", "NotNow"])
        }
    }

    @Test func everyCheckinStoreCallRecordsItsEventInTheSameStatement() async throws {
        try await TestDatabase.withFreshClient { client in
            let store = PostgresEnrollmentStore(client: client, logger: WebhookTest.logger)
            #expect(try await Self.authenticate("REC-S", hash: Self.hash("REC-S"), store: store) == .allowed)
            let bootstrap = try Self.checkin(["MessageType": "SetBootstrapToken", "UDID": "REC-S"])
            try await store.saveBootstrapToken(
                deviceID: "REC-S", token: Data([9]), webhookEvent: Self.renderer.checkinEvent(bootstrap))
            let seen = try Self.checkin(["MessageType": "GetBootstrapToken", "UDID": "REC-S"])
            try await store.markSeen(enrollmentID: "REC-S", webhookEvent: Self.renderer.checkinEvent(seen))
            let checkOut = try Self.checkin(["MessageType": "CheckOut", "UDID": "REC-S"])
            try await store.checkOut(enrollmentID: "REC-S", webhookEvent: Self.renderer.checkinEvent(checkOut))
            #expect(try await store.fetchBootstrapToken(deviceID: "REC-S") == Data([9]))
            #expect(try await store.fetchEnrollment(id: "REC-S")?.enabled == false)
            let topics = try await Self.events("REC-S", client: client).map(\.0)
            #expect(topics == ["mdm.Authenticate", "mdm.SetBootstrapToken", "mdm.GetBootstrapToken", "mdm.CheckOut"])
            // Every event left its enrollment's queue ready for the worker.
            let due = try await client.query(
                "SELECT count(*)::int FROM webhook_queues WHERE enrollment_id = 'REC-S' AND next_attempt_at <= now()",
                logger: WebhookTest.logger
            ).decode(Int.self).reduce(0, +)
            #expect(due == 1)
        }
    }
}
