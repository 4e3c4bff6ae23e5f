import Foundation
import MDMBus
import MDMServerSupport
import MDMTestSupport
import Synchronization
import Testing

@testable import PushService

/// Enqueue → Redis stream → PushService → APNs (mock, HTTP/2 with client certificates) →
/// device poll, with real PostgreSQL and Redis.
@Suite("Push: from enqueue to a woken device")
struct PushFlowTests {
    static let topic = "com.apple.mgmt.External.push-one"

    @Test func enqueueToThreeDevicesSendsExactlyThreeCorrectPushesAndEachGetsTheCommand() async throws {
        try await PushStack.with { push in
            let certificate = try await push.uploadPushCertificate(topic: Self.topic)
            var devices: [SimulatedDevice] = []
            for _ in 0..<3 { devices.append(try await push.enrolledDevice(topic: Self.topic)) }
            let command = try makeCommand("DeviceInformation")

            let reply = try await push.stack.enqueue(command.plist, to: devices.map(\.udid), query: "")
            #expect(reply.status == 200)
            let status = try #require(try reply.json()["status"] as? [String: [String: String]])

            let requests = try await push.apns.waitForRequests(count: 3)
            for device in devices {
                let request = try #require(requests.first { $0.token == device.tokenHex })
                #expect(request.method == "POST")
                #expect(request.path == "/3/device/\(device.tokenHex)")
                #expect(request.header("apns-push-type") == "mdm")
                #expect(request.header("apns-topic") == Self.topic)
                #expect(request.header("apns-expiration") == nil, "none unless MDM_PUSH_EXPIRATION is set")
                let body = try JSONSerialization.jsonObject(with: Data(request.body)) as? [String: String]
                #expect(body == ["mdm": device.pushMagic])
                #expect(request.clientCertificateSubject == certificate.certificate.subject.description)
                let apnsID = try #require(status[device.udid]?["push_result"])
                #expect(request.header("apns-id")?.lowercased() == apnsID.lowercased())
                #expect(try await device.idle().commandUUID() == command.uuid)
            }
            // Settled: nothing is owed, so nothing more will be sent.
            #expect(try await push.stack.database.count("SELECT count(*) FROM push_outbox") == 0)
            #expect(await push.apns.requests().count == 3)
        }
    }

    @Test(arguments: [3600, 0])
    func pushExpirationIsSentAsConfigured(seconds: Int) async throws {
        var options = PushStack.Options()
        options.pushExpiration = .seconds(seconds)
        try await PushStack.with(options: options) { push in
            _ = try await push.uploadPushCertificate(topic: Self.topic)
            let device = try await push.enrolledDevice(topic: Self.topic)
            let before = Int(Date().timeIntervalSince1970)
            #expect(try await push.stack.api(.POST, "/v1/push/\(device.udid)").status == 200)
            let request = try #require(try await push.apns.waitForRequests(count: 1).first)
            let after = Int(Date().timeIntervalSince1970) + 1
            let expiration = try #require(request.header("apns-expiration").flatMap { Int($0) })
            if seconds == 0 {
                #expect(expiration == 0, "0 asks APNs to deliver now or never")
            } else {
                #expect((before + seconds...after + seconds).contains(expiration), "\(expiration)")
            }
        }
    }

    @Test func pushExpirationSettingIsValidated() throws {
        let settings = { (value: String) in
            try Settings(
                arguments: [],
                environment: ["MDM_REDIS_URL": "redis://127.0.0.1:1", "MDM_PUSH_EXPIRATION": value])
        }
        #expect(try PushConfiguration(settings: settings("86400")).pushExpiration == .seconds(86400))
        #expect(try PushConfiguration(settings: settings("0")).pushExpiration == .zero)
        #expect(
            try PushConfiguration(settings: Settings(arguments: [], environment: ["MDM_REDIS_URL": "redis://h:1"]))
                .pushExpiration == nil)
        #expect(throws: ConfigurationError.self) { try PushConfiguration(settings: settings("-1")) }
        #expect(throws: ConfigurationError.self) { try PushConfiguration(settings: settings("soon")) }
    }

    @Test func twoTopicsArePushedWithTheirOwnCertificates() async throws {
        try await PushStack.with { push in
            let topics = ["com.apple.mgmt.External.alpha", "com.apple.mgmt.External.beta"]
            var certificates: [String: String] = [:]
            var devices: [SimulatedDevice] = []
            for topic in topics {
                certificates[topic] = try await push.uploadPushCertificate(topic: topic).certificate.subject.description
                devices.append(try await push.enrolledDevice(topic: topic))
            }
            let reply = try await push.stack.api(.POST, "/v1/push/" + devices.map(\.udid).joined(separator: ","))
            #expect(reply.status == 200)
            let requests = try await push.apns.waitForRequests(count: 2)
            for device in devices {
                let request = try #require(requests.first { $0.token == device.tokenHex })
                #expect(request.header("apns-topic") == device.topic)
                #expect(request.clientCertificateSubject == certificates[device.topic])
            }
        }
    }

    @Test func unregisteredIsRecordedAndNotPushedAgainUntilATokenUpdate() async throws {
        try await PushStack.with { push in
            try await push.uploadPushCertificate(topic: Self.topic)
            let device = try await push.enrolledDevice(topic: Self.topic)
            push.apns.respond(to: device.tokenHex, with: .unregistered)

            let first = try await push.stack.api(.POST, "/v1/push/\(device.udid)")
            #expect(first.status == 207)
            let error = try #require(
                (try first.json()["status"] as? [String: [String: String]])?[device.udid]?["push_error"])
            #expect(error.contains("Unregistered"))
            #expect(
                try await push.stack.database.count(
                    "SELECT count(*) FROM enrollments WHERE id = '\(device.udid)' AND push_unregistered_at IS NOT NULL")
                    == 1)

            let second = try await push.stack.api(.POST, "/v1/push/\(device.udid)")
            let secondError = (try second.json()["status"] as? [String: [String: String]])?[device.udid]?["push_error"]
            #expect(secondError?.contains("unregistered") == true)
            #expect(await push.apns.requests().count == 1)

            // A TokenUpdate makes the enrollment pushable again.
            _ = try await device.tokenUpdate()
            push.apns.respond(to: device.tokenHex, with: .tooManyRequests(times: 0))
            let third = try await push.stack.api(.POST, "/v1/push/\(device.udid)")
            #expect(third.status == 200)
            #expect((try third.json()["status"] as? [String: [String: String]])?[device.udid]?["push_result"] != nil)
            #expect(await push.apns.requests().count >= 2, "pushed again after the TokenUpdate")
        }
    }

    @Test func tooManyRequestsIsRetriedUntilAccepted() async throws {
        try await PushStack.with { push in
            try await push.uploadPushCertificate(topic: Self.topic)
            let device = try await push.enrolledDevice(topic: Self.topic)
            push.apns.respond(to: device.tokenHex, with: .tooManyRequests(times: 2))
            let reply = try await push.stack.api(.POST, "/v1/push/\(device.udid)")
            #expect(reply.status == 200)
            let result = (try reply.json()["status"] as? [String: [String: String]])?[device.udid]
            #expect(result?["push_result"] != nil)
            #expect(await push.apns.requests().count == 3)
        }
    }

    @Test func anAPNsOutageIsRedrivenFromTheOutbox() async throws {
        var options = PushStack.Options()
        options.apnsMaxAttempts = 2
        try await PushStack.with(options: options) { push in
            try await push.uploadPushCertificate(topic: Self.topic)
            let device = try await push.enrolledDevice(topic: Self.topic)
            push.apns.respond(to: device.tokenHex, with: .internalServerError(times: 3))
            let reply = try await push.stack.api(.POST, "/v1/push/\(device.udid)")
            #expect(reply.status == 207, "the first two attempts fail")
            // Two more attempts after the outbox re-drives it: one more 500, then accepted.
            _ = try await push.apns.waitForRequests(count: 4, timeout: .seconds(30))
            try await waitUntil("the push is settled") {
                try await push.stack.database.count("SELECT count(*) FROM push_outbox") == 0
            }
            #expect(
                try await push.stack.database.count(
                    "SELECT count(*) FROM enrollments WHERE id = '\(device.udid)' AND last_push_id IS NOT NULL") == 1)
        }
    }

    @Test func newCertificateForATopicIsUsedWithoutARestart() async throws {
        try await PushStack.with { push in
            let first = try await push.uploadPushCertificate(topic: Self.topic)
            let device = try await push.enrolledDevice(topic: Self.topic)
            #expect(try await push.stack.api(.POST, "/v1/push/\(device.udid)").status == 200)
            let renewed = try await push.uploadPushCertificate(topic: Self.topic)
            #expect(try await push.stack.api(.POST, "/v1/push/\(device.udid)").status == 200)
            let subjects = await push.apns.requests().map(\.clientCertificateSubject)
            #expect(subjects == [first.certificate.subject.description, renewed.certificate.subject.description])
        }
    }

    @Test func pushReportsUnknownAndUnpushableEnrollmentsPerID() async throws {
        try await PushStack.with { push in
            try await push.uploadPushCertificate(topic: Self.topic)
            let pushable = try await push.enrolledDevice(topic: Self.topic)
            let authenticatedOnly = try push.stack.makeDevice(topic: Self.topic)
            #expect(try await authenticatedOnly.authenticate().status == 200)

            let reply = try await push.stack.api(
                .GET, "/v1/push/\(pushable.udid),\(authenticatedOnly.udid),no-such-enrollment")
            #expect(reply.status == 207)
            let status = try #require(try reply.json()["status"] as? [String: [String: String]])
            #expect(status[pushable.udid]?["push_result"] != nil)
            #expect(status[authenticatedOnly.udid]?["push_error"] == "no push info for enrollment")
            #expect(status["no-such-enrollment"]?["push_error"] == "unknown enrollment ID")
            #expect(await push.apns.requests().count == 1)
        }
    }

    @Test func asyncReturnsOnceQueuedAndThePushStillArrives() async throws {
        try await PushStack.with { push in
            try await push.uploadPushCertificate(topic: Self.topic)
            let device = try await push.enrolledDevice(topic: Self.topic)
            let command = try makeCommand()
            let reply = try await push.stack.enqueue(command.plist, to: [device.udid], query: "?async=1")
            #expect(reply.status == 200)
            let status = try #require(try reply.json()["status"] as? [String: [String: String]])
            #expect(status[device.udid] == [:])
            let request = try #require(try await push.apns.waitForRequests(count: 1).first)
            #expect(request.token == device.tokenHex)
        }
    }

    @Test func pushesForOneEnrollmentReadTogetherBecomeOneAPNsRequest() async throws {
        var options = PushStack.Options()
        options.startPushService = false
        try await PushStack.with(options: options) { push in
            try await push.uploadPushCertificate(topic: Self.topic)
            let device = try await push.enrolledDevice(topic: Self.topic)
            var commands: [String] = []
            for _ in 0..<3 {
                let command = try makeCommand()
                commands.append(command.uuid)
                #expect(try await push.stack.enqueue(command.plist, to: [device.udid], query: "?async=1").status == 200)
            }
            try await push.runPushService {
                _ = try await push.apns.waitForRequests(count: 1)
                try await waitUntil("every owed push is settled") {
                    try await push.stack.database.count("SELECT count(*) FROM push_outbox") == 0
                }
            }
            #expect(await push.apns.requests().count == 1)
            #expect(try await device.idle().commandUUID() == commands[0])
        }
    }

    @Test func redisDownDuringEnqueueDelaysPushesButLosesNone() async throws {
        let redis = try await TestRedisServer.start()
        var options = PushStack.Options()
        options.redisURL = redis.url
        let servers = RedisServers(redis)
        do {
            try await PushStack.with(options: options) { push in
                try await push.uploadPushCertificate(topic: Self.topic)
                let device = try await push.enrolledDevice(topic: Self.topic)
                await redis.kill()

                let command = try makeCommand()
                let reply = try await push.stack.enqueue(command.plist, to: [device.udid], query: "")
                #expect(reply.status == 200, "the command is queued in PostgreSQL")
                #expect((try reply.json()["push_error"] as? String)?.contains("unavailable") == true)
                #expect(try await device.idle().commandUUID() == command.uuid)
                #expect(await push.apns.requests().isEmpty)

                servers.add(try await redis.restarted())
                let request = try #require(try await push.apns.waitForRequests(count: 1, timeout: .seconds(30)).first)
                #expect(request.token == device.tokenHex)
            }
        } catch {
            await servers.killAll()
            throw error
        }
        await servers.killAll()
    }
}

/// Redis servers a test started, to stop them all at the end.
final class RedisServers: Sendable {
    private let servers: Mutex<[TestRedisServer]>

    init(_ first: TestRedisServer) {
        servers = Mutex([first])
    }

    func add(_ server: TestRedisServer) {
        servers.withLock { $0.append(server) }
    }

    func killAll() async {
        for server in servers.withLock({ $0 }) { await server.kill() }
    }
}

@Suite("APIService: escrow key unlock")
struct EscrowKeyUnlockTests {
    static let topic = "com.apple.mgmt.External.escrow"

    @Test func unlockGoesToAppleWithThePushCertificateAndItsAnswerIsRelayed() async throws {
        try await PushStack.with { push in
            let certificate = try await push.uploadPushCertificate(topic: Self.topic)
            let form =
                "topic=\(Self.topic)&serial=C02XYZ&productType=iPad4%2C1&imei=35%20123&orgName=Example+Org"
                + "&guid=admin%40example.com&escrowKey=AAAA-BBBB-CCCC"
            let reply = try await push.stack.api(.POST, "/v1/escrowkeyunlock", body: Data(form.utf8))
            #expect(reply.status == 200)
            #expect(String(decoding: reply.body, as: UTF8.self) == #"{"status":"unlocked"}"#)

            let request = try #require(await push.apns.requests().first)
            #expect(request.method == "POST")
            #expect(request.path == MockAPNs.escrowKeyUnlockPath + "?serial=C02XYZ&productType=iPad4%2C1&imei=35%20123")
            #expect(request.header("content-type") == "application/x-www-form-urlencoded")
            #expect(
                String(decoding: request.body, as: UTF8.self)
                    == "orgName=Example%20Org&guid=admin%40example.com&escrowKey=AAAA-BBBB-CCCC")
            #expect(request.clientCertificateSubject == certificate.certificate.subject.description)
        }
    }

    @Test func missingFieldsAre400AndAnUnknownTopicIs404() async throws {
        try await PushStack.with { push in
            let missing = try await push.stack.api(
                .POST, "/v1/escrowkeyunlock", body: Data("topic=\(Self.topic)&serial=C02XYZ".utf8))
            #expect(missing.status == 400)
            #expect(String(decoding: missing.body, as: UTF8.self).contains("escrowKey"))
            let unknown = try await push.stack.api(
                .POST, "/v1/escrowkeyunlock",
                body: Data("topic=com.apple.mgmt.none&serial=S&productType=P&orgName=O&guid=G&escrowKey=K".utf8))
            #expect(unknown.status == 404)
            #expect(await push.apns.requests().isEmpty)
        }
    }
}
