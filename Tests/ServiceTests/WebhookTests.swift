import Crypto
import Foundation
import Hummingbird
import Logging
import MDMServerSupport
import MDMStorage
import MDMTestSupport
import MDMWebhook
import PostgresNIO
import Testing

@testable import CheckinService

enum ServiceFixture {
    static func data(_ name: String) throws -> Data {
        let url = try #require(Bundle.module.url(forResource: name, withExtension: nil, subdirectory: "Fixtures"))
        return try Data(contentsOf: url)
    }
}

@Suite("Webhook events from the roles, delivered, and the operators' API")
struct WebhookTests {
    static let fixtureUDID = "663b07bb783e9ade1dae4fbb92ea12afc0ce5b69"
    static let fixtureCommandUUID = "0a5d1ab4-6a3e-4b8e-9d55-2f0c1e6b7a10"

    static func configuration(_ receiver: WebhookReceiver, hmacKey: [UInt8]? = nil, maxAttempts: Int? = nil) throws
        -> WebhookConfiguration
    {
        WebhookConfiguration(
            url: try #require(URL(string: receiver.url)),
            hmacKey: hmacKey,
            timeout: .seconds(5),
            retryMinimum: .milliseconds(20),
            retryMaximum: .milliseconds(100),
            expiry: WebhookExpiry(maxAge: .seconds(3600), maxAttempts: maxAttempts),
            pollInterval: .milliseconds(50)
        )
    }

    /// Runs a webhook worker on the stack's database while `body` runs.
    static func withWorker<T: Sendable>(
        _ stack: TestStack,
        configuration: WebhookConfiguration,
        _ body: @escaping @Sendable () async throws -> T
    ) async throws -> T {
        try await stack.database.withClient { client in
            let worker = WebhookWorker(configuration: configuration, database: client, logger: TestStack.logger)
            return try await withThrowingTaskGroup(of: Void.self, returning: T.self) { group in
                group.addTask { try await worker.run() }
                defer { group.cancelAll() }
                return try await body()
            }
        }
    }

    /// The body with `created_at` and `event_id` checked for shape and replaced by the goldens'
    /// placeholders.
    static func normalized(_ body: [UInt8]) throws -> String {
        var text = String(decoding: body, as: UTF8.self)
        let createdAt = try #require(text.firstMatch(of: /"created_at":"([^"]+)"/))
        let timestamp = String(createdAt.1)
        #expect(
            timestamp.wholeMatch(of: /\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z/) != nil,
            "created_at is RFC 3339 UTC: \(timestamp)"
        )
        text.replaceSubrange(createdAt.range, with: #""created_at":"0001-01-01T00:00:00Z""#)
        let eventID = try #require(text.firstMatch(of: /"event_id":"([^"]+)"/))
        #expect(UUID(uuidString: String(eventID.1)) != nil)
        #expect(String(eventID.1) == String(eventID.1).lowercased())
        text.replaceSubrange(eventID.range, with: #""event_id":"00000000-0000-0000-0000-000000000000""#)
        return text
    }

    @Test func deliveredEventsMatchTheGoldenJSONInOrderAndTheirSignatureVerifies() async throws {
        let receiver = try await WebhookReceiver.start()
        defer { Task { try? await receiver.shutdown() } }
        let key = Array("golden-hmac-key".utf8)
        try await TestStack.with(options: .init(webhook: true)) { stack in
            let device = try stack.makeDevice(udid: Self.fixtureUDID)
            let checkin = "application/x-apple-aspen-mdm-checkin"
            for name in ["Authenticate.1.plist", "TokenUpdate.1.plist"] {
                let reply = try await device.send(
                    body: try ServiceFixture.data(name), to: stack.checkinURL, contentType: checkin)
                #expect(reply.status == 200, "\(name)")
            }
            let command = try makeCommand("DeviceInformation", uuid: Self.fixtureCommandUUID)
            #expect(try await stack.enqueue(command.plist, to: [Self.fixtureUDID]).status == 200)
            let report = try await device.send(
                body: try ServiceFixture.data("Report.Acknowledged.plist"), to: stack.commandURL)
            #expect(report.status == 200)

            let configuration = try Self.configuration(receiver, hmacKey: key)
            let received = try await Self.withWorker(stack, configuration: configuration) {
                try await receiver.waitForAccepted(count: 3)
            }
            let goldens = [
                "Webhook.Authenticate.1.json", "Webhook.TokenUpdate.1.json", "Webhook.Report.Acknowledged.json",
            ]
            #expect(received.count == goldens.count)
            for (request, golden) in zip(received, goldens) {
                let expected = String(decoding: try ServiceFixture.data(golden), as: UTF8.self)
                    .trimmingCharacters(in: .newlines)
                #expect(try Self.normalized(request.body) == expected, "\(golden)")
                let signature = try #require(request.header("X-Hmac-Signature"))
                let code = HMAC<SHA256>.authenticationCode(for: request.body, using: SymmetricKey(data: key))
                #expect(Data(base64Encoded: signature) == Data(code), "signature of \(golden)")
            }
        }
    }

    @Test func everyAuthenticatedCheckinAndReportRecordsAnEventAndRefusedOnesNone() async throws {
        try await TestStack.with(options: .init(zeroLengthChallenge: true, webhook: true)) { stack in
            let device = try stack.makeDevice()
            try await device.enroll()
            #expect(try await device.idle().status == 200)
            #expect(try await device.tokenUpdate(userID: "USER-1").status == 200)
            #expect(try await device.idle(userID: "USER-1").status == 200)
            let messages: [[String: Any]] = [
                ["MessageType": "SetBootstrapToken", "UDID": device.udid, "BootstrapToken": Data([1])],
                ["MessageType": "GetBootstrapToken", "UDID": device.udid],
                ["MessageType": "UserAuthenticate", "UDID": device.udid, "UserID": "USER-1"],
            ]
            for message in messages {
                #expect(try await device.checkin(message).status == 200)
            }
            #expect(try await device.checkOut().status == 200)
            // Refused: another device's certificate records nothing.
            var impostor = try stack.makeDevice()
            try await impostor.enroll()
            impostor.identity = device.identity
            #expect(try await impostor.idle().status == 400)

            let topics = try await stack.webhookTopics()
            #expect(
                topics[device.udid] == [
                    "mdm.Authenticate", "mdm.TokenUpdate", "mdm.Connect", "mdm.SetBootstrapToken",
                    "mdm.GetBootstrapToken", "mdm.CheckOut",
                ]
            )
            #expect(topics["\(device.udid):USER-1"] == ["mdm.TokenUpdate", "mdm.Connect", "mdm.UserAuthenticate"])
            #expect(topics[impostor.udid] == ["mdm.Authenticate", "mdm.TokenUpdate"])
        }
    }

    @Test func withoutAWebhookNothingIsRecorded() async throws {
        try await TestStack.with { stack in
            let device = try stack.makeDevice()
            try await device.enroll()
            #expect(try await device.idle().status == 200)
            #expect(try await stack.webhookTopics().isEmpty)
        }
    }

    @Test func urlParametersOfTheDeviceRequestReachTheEvent() async throws {
        try await TestStack.with(options: .init(webhook: true)) { stack in
            var device = try stack.makeDevice()
            device.commandURL += "?tenant=a%20b&site=7"
            try await device.enroll()
            #expect(try await device.idle().status == 200)
            let body = try await stack.database.withClient { client in
                try await client.query(
                    "SELECT body FROM webhook_events WHERE topic = 'mdm.Connect'",
                    logger: TestStack.logger
                ).decode(Data.self).reduce(into: [Data]()) { $0.append($1) }
            }
            let first = try #require(body.first)
            let json = try #require(try JSONSerialization.jsonObject(with: first) as? [String: Any])
            let event = try #require(json["acknowledge_event"] as? [String: Any])
            #expect(event["url_params"] as? [String: String] == ["tenant": "a b", "site": "7"])
        }
    }

    @Test func operatorsListInspectAndRetryDeadLetters() async throws {
        let receiver = try await WebhookReceiver.start(mode: .fail(status: 503))
        defer { Task { try? await receiver.shutdown() } }
        try await TestStack.with(options: .init(webhook: true)) { stack in
            let device = try stack.makeDevice()
            #expect(try await device.authenticate().status == 200)
            let configuration = try Self.configuration(receiver, maxAttempts: 2)
            try await Self.withWorker(stack, configuration: configuration) {
                _ = try await receiver.waitForRequests(count: 2)
                try await waitUntil("dead letter listed") {
                    let listed = try await stack.api(.GET, "/v1/webhook/events").json()["events"] as? [Any]
                    return listed?.count == 1
                }
            }
            let listing = try await stack.api(.GET, "/v1/webhook/events?state=dead&enrollment_id=\(device.udid)")
            #expect(listing.status == 200)
            let events = try #require(try listing.json()["events"] as? [[String: Any]])
            let dead = try #require(events.first)
            #expect(dead["topic"] as? String == "mdm.Authenticate")
            #expect(dead["enrollment_id"] as? String == device.udid)
            #expect(dead["attempts"] as? Int == 2)
            #expect(dead["last_error"] as? String == "receiver answered 503")
            #expect(dead["state"] as? String == "dead")
            let id = try #require(dead["id"] as? Int)

            let body = try await stack.api(.GET, "/v1/webhook/events/\(id)")
            #expect(body.status == 200)
            let event = try #require(try JSONSerialization.jsonObject(with: body.body) as? [String: Any])
            #expect(event["event_id"] as? String == dead["event_id"] as? String)
            #expect(try await stack.api(.GET, "/v1/webhook/events/999999").status == 404)
            #expect(try await stack.api(.GET, "/v1/webhook/events?state=lost").status == 400)
            #expect(try await stack.api(.GET, "/v1/webhook/events", authorization: nil).status == 401)

            receiver.setMode(.accept())
            let retry = try await stack.api(.POST, "/v1/webhook/events/retry", body: Data(#"{"ids":[\#(id)]}"#.utf8))
            #expect(retry.status == 200)
            #expect(try retry.json()["retried"] as? Int == 1)
            let delivered = try await Self.withWorker(stack, configuration: configuration) {
                let accepted = try await receiver.waitForAccepted(count: 1)
                try await waitUntil("delivered after retry") {
                    let listed = try await stack.api(.GET, "/v1/webhook/events?state=delivered").json()["events"]
                    return (listed as? [Any])?.count == 1
                }
                return accepted
            }
            #expect(String(decoding: try #require(delivered.first).body, as: UTF8.self).contains("mdm.Authenticate"))
            #expect(try await stack.api(.POST, "/v1/webhook/events/retry").json()["retried"] as? Int == 0)
        }
    }

    @Test func roleWorkersRunTheWebhookWorkerWithTheRolesPool() async throws {
        // The seam PushService uses: RoleApplication.build(services:) with the webhook worker.
        let receiver = try await WebhookReceiver.start()
        defer { Task { try? await receiver.shutdown() } }
        try await TestStack.with(options: .init(webhook: true)) { stack in
            let device = try stack.makeDevice()
            try await device.enroll()
            let configuration = try Self.configuration(receiver)
            let reporter = PortReporter()
            let app = try RoleApplication.build(
                server: ServerConfiguration(port: 0, databaseURL: stack.database.url, databasePoolSize: 2),
                logger: TestStack.logger,
                services: { database in
                    [WebhookWorker(configuration: configuration, database: database, logger: TestStack.logger)]
                },
                onServerRunning: reporter.report,
                routes: { _, _ in }
            )
            let received = try await withRunningApplication(app, reporter: reporter) { _ in
                try await receiver.waitForAccepted(count: 2)
            }
            #expect(received.count == 2)
        }
    }
}

extension TestStack {
    /// Topics of the recorded webhook events per enrollment, in order.
    func webhookTopics() async throws -> [String: [String]] {
        try await database.withClient { client in
            var topics: [String: [String]] = [:]
            let rows = try await client.query(
                "SELECT enrollment_id, topic FROM webhook_events ORDER BY id",
                logger: TestStack.logger
            )
            for try await (enrollment, topic) in rows.decode((String, String).self) {
                topics[enrollment, default: []].append(topic)
            }
            return topics
        }
    }
}
