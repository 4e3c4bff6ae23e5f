import Crypto
import Foundation
import Logging
import MDMServerSupport
import MDMStorage
import MDMTestSupport
import NIOSSL
import Synchronization
import Testing

@testable import PushService

// Serialized: the concurrency test saturates a small machine and would starve its neighbours' handshakes.
@Suite("APNsClient against the mock APNs", .serialized)
struct APNsClientTests {
    static let topic = "com.apple.mgmt.External.2b3c4d5e-6f70-4182-93a4-b5c6d7e8f901"
    static let token = "0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9"
    static let version = Date(timeIntervalSince1970: 1_750_000_000)

    static func push(
        _ token: String = token,
        topic: String = topic,
        magic: String = "6F0E9E2C-7E36-4D4B-9E3A-0F6C1C0D2B1A",
        version: Date = version,
        expiration: Date? = nil
    ) -> APNsPush {
        APNsPush(
            topic: topic, deviceToken: token, pushMagic: magic, certificateVersion: version, expiration: expiration)
    }

    @Test func pushIsPostedToTheTokenPathWithMDMHeadersBodyAndTheTopicCertificate() async throws {
        try await APNsFixture.with { fixture in
            let certificate = try await fixture.installCertificate(topic: Self.topic)
            let expiration = Date(timeIntervalSince1970: 1_800_000_000)

            let outcome = await fixture.client.send(Self.push(expiration: expiration))

            let request = try #require(try await fixture.mock.waitForRequests(count: 1).first)
            #expect(outcome == .delivered(apnsID: try #require(request.header("apns-id"))))
            #expect(request.method == "POST")
            #expect(request.path == "/3/device/\(Self.token)")
            #expect(request.header("apns-push-type") == "mdm")
            #expect(request.header("apns-topic") == Self.topic)
            #expect(request.header("apns-expiration") == "1800000000")
            #expect(String(decoding: request.body, as: UTF8.self) == #"{"mdm":"6F0E9E2C-7E36-4D4B-9E3A-0F6C1C0D2B1A"}"#)
            #expect(request.clientCertificateSubject == certificate.certificate.subject.description)
        }
    }

    @Test func pushMagicIsEscapedAsAJSONStringAndUppercaseTokensAreSentLowercase() async throws {
        try await APNsFixture.with { fixture in
            try await fixture.installCertificate(topic: Self.topic)
            let magic = "quote\" backslash\\ newline\n tab\t bell\u{7} é"

            let outcome = await fixture.client.send(Self.push(Self.token.uppercased(), magic: magic))

            guard case .delivered = outcome else {
                Issue.record("expected delivery, got \(outcome)")
                return
            }
            let request = try #require(try await fixture.mock.waitForRequests(count: 1).first)
            #expect(request.path == "/3/device/\(Self.token)")
            #expect(request.header("apns-expiration") == nil)
            let body = try JSONDecoder().decode([String: String].self, from: Data(request.body))
            #expect(body == ["mdm": magic])
        }
    }

    @Test func eachTopicPresentsItsOwnCertificate() async throws {
        try await APNsFixture.with { fixture in
            let otherTopic = "com.apple.mgmt.External.other"
            let first = try await fixture.installCertificate(topic: Self.topic)
            let second = try await fixture.installCertificate(topic: otherTopic)

            _ = await fixture.client.send(Self.push())
            _ = await fixture.client.send(Self.push(topic: otherTopic))

            let requests = try await fixture.mock.waitForRequests(count: 2)
            let subjects = Dictionary(
                requests.map { ($0.header("apns-topic") ?? "", $0.clientCertificateSubject) },
                uniquingKeysWith: { first, _ in first }
            )
            #expect(subjects[Self.topic] == first.certificate.subject.description)
            #expect(subjects[otherTopic] == second.certificate.subject.description)
            #expect(first.certificate.subject != second.certificate.subject)
        }
    }

    @Test func unregisteredTokenReportsAPNsTimestamp() async throws {
        try await APNsFixture.with { fixture in
            try await fixture.installCertificate(topic: Self.topic)
            fixture.mock.respond(to: Self.token, with: .unregistered)
            let before = Date()

            let outcome = await fixture.client.send(Self.push())

            guard case .unregistered(let since, let reason) = outcome else {
                Issue.record("expected unregistered, got \(outcome)")
                return
            }
            #expect(reason == "Unregistered")
            let timestamp = try #require(since)
            // APNs gives milliseconds; the mock stamps the time it answered.
            #expect(timestamp >= before.addingTimeInterval(-1))
            #expect(timestamp <= Date().addingTimeInterval(1))
            #expect(await fixture.mock.requests().count == 1)
        }
    }

    @Test func badDeviceTokenIsRejectedWithoutRetrying() async throws {
        try await APNsFixture.with { fixture in
            try await fixture.installCertificate(topic: Self.topic)
            fixture.mock.respond(to: Self.token, with: .badDeviceToken)

            #expect(await fixture.client.send(Self.push()) == .rejected(status: 400, reason: "BadDeviceToken"))
            #expect(await fixture.mock.requests().count == 1)
        }
    }

    @Test func tokenThatIsNotHexIsRejectedWithoutARequest() async throws {
        try await APNsFixture.with { fixture in
            try await fixture.installCertificate(topic: Self.topic)

            #expect(
                await fixture.client.send(Self.push("../3/device/ab"))
                    == .rejected(status: 400, reason: "BadDeviceToken"))
            #expect(await fixture.client.send(Self.push("")) == .rejected(status: 400, reason: "BadDeviceToken"))
            #expect(await fixture.mock.requests().isEmpty)
        }
    }

    @Test func tooManyRequestsIsRetriedWithBackoffUntilDelivered() async throws {
        try await APNsFixture.with { fixture in
            try await fixture.installCertificate(topic: Self.topic)
            fixture.mock.respond(to: Self.token, with: .tooManyRequests(times: 2))

            let outcome = await fixture.client.send(Self.push())

            let requests = await fixture.mock.requests()
            #expect(requests.count == 3)
            #expect(outcome == .delivered(apnsID: try #require(requests.last?.header("apns-id"))))
            // Every attempt of one push carries the same apns-id.
            #expect(Set(requests.compactMap { $0.header("apns-id") }).count == 1)
        }
    }

    @Test func serverErrorsBeyondTheAttemptBoundFailAfterExactlyMaxAttempts() async throws {
        try await APNsFixture.with(maxAttempts: 3) { fixture in
            try await fixture.installCertificate(topic: Self.topic)
            fixture.mock.respond(to: Self.token, with: .internalServerError(times: 10))

            let outcome = await fixture.client.send(Self.push())

            #expect(outcome == .failed(reason: "APNs answered 500 InternalServerError to all 3 attempts"))
            #expect(await fixture.mock.requests().count == 3)
        }
    }

    @Test func goAwayIsResentOnceOnANewConnectionAndDelivered() async throws {
        try await APNsFixture.with { fixture in
            try await fixture.installCertificate(topic: Self.topic)
            fixture.mock.respond(to: Self.token, with: .goAway)

            let outcome = await fixture.client.send(Self.push())

            let requests = await fixture.mock.requests()
            #expect(requests.count == 2)
            #expect(outcome == .delivered(apnsID: try #require(requests.last?.header("apns-id"))))
            #expect(fixture.mock.acceptedConnectionCount() == 2)
        }
    }

    @Test func newerCertificateVersionSwitchesCertificateWithoutANewClient() async throws {
        try await APNsFixture.with { fixture in
            let original = try await fixture.installCertificate(topic: Self.topic)
            let later = Self.version.addingTimeInterval(60)

            _ = await fixture.client.send(Self.push())
            let renewed = try await fixture.installCertificate(topic: Self.topic)
            // Same version: the cached certificate is still the right one as far as the client knows.
            _ = await fixture.client.send(Self.push())
            _ = await fixture.client.send(Self.push(version: later))
            // An older version (read before the upload) does not switch back.
            _ = await fixture.client.send(Self.push(version: Self.version))

            let subjects = try await fixture.mock.waitForRequests(count: 4).map(\.clientCertificateSubject)
            let old = original.certificate.subject.description
            let new = renewed.certificate.subject.description
            #expect(subjects == [old, old, new, new])
            #expect(fixture.store.fetchCount == 2)
        }
    }

    @Test func pushInFlightWhenTheCertificateChangesFinishesOnTheOldConnectionWhichThenCloses() async throws {
        try await APNsFixture.with { fixture in
            let original = try await fixture.installCertificate(topic: Self.topic)
            let heldToken = "ff" + Self.token.dropFirst(2)
            fixture.mock.respond(to: heldToken, with: .hold)
            let held = Task { await fixture.client.send(Self.push(heldToken)) }
            _ = try await fixture.mock.waitForRequests(count: 1)

            let renewed = try await fixture.installCertificate(topic: Self.topic)
            let switched = await fixture.client.send(Self.push(version: Self.version.addingTimeInterval(60)))
            fixture.mock.release(heldToken)
            let finished = await held.value

            guard case .delivered = switched, case .delivered = finished else {
                Issue.record("expected both delivered, got \(switched) and \(finished)")
                return
            }
            let requests = await fixture.mock.requests()
            #expect(requests.map(\.token) == [heldToken, Self.token])
            #expect(
                requests.map(\.clientCertificateSubject) == [
                    original.certificate.subject.description, renewed.certificate.subject.description,
                ])
            try await fixture.mock.waitForOpenConnections(atMost: 1)
        }
    }

    @Test func topicWithoutCertificateFailsWithoutARequestAndTheMissIsCached() async throws {
        try await APNsFixture.with { fixture in
            let expected = APNsOutcome.failed(reason: "no push certificate for topic \(Self.topic)")
            #expect(await fixture.client.send(Self.push()) == expected)
            #expect(await fixture.client.send(Self.push()) == expected)
            #expect(fixture.store.fetchCount == 1)

            // An upload gives the topic a newer version, which is looked up at once.
            try await fixture.installCertificate(topic: Self.topic)
            guard case .delivered = await fixture.client.send(Self.push(version: Self.version.addingTimeInterval(1)))
            else {
                Issue.record("expected delivery after the upload")
                return
            }
            #expect(await fixture.mock.requests().count == 1)
        }
    }

    @Test func storeErrorFailsThePushAndIsNotCached() async throws {
        try await APNsFixture.with { fixture in
            try await fixture.installCertificate(topic: Self.topic)
            fixture.store.failNextFetch(with: StorageError.pushKeyUndecryptable(topic: Self.topic))

            let failed = await fixture.client.send(Self.push())
            let delivered = await fixture.client.send(Self.push())

            guard case .failed(let reason) = failed else {
                Issue.record("expected failure, got \(failed)")
                return
            }
            #expect(reason.contains("does not decrypt with MDM_PUSH_KEY_ENCRYPTION_KEY"))
            guard case .delivered = delivered else {
                Issue.record("expected delivery once the store answers, got \(delivered)")
                return
            }
        }
    }

    @Test func keyThatDoesNotBelongToTheCertificateFailsWithoutARequest() async throws {
        try await APNsFixture.with { fixture in
            let certificate = try fixture.ca.issuePushCertificate(topic: Self.topic)
            let stranger = try fixture.ca.issuePushCertificate(topic: Self.topic)
            try await fixture.store.savePushCertificate(
                PushCertificateRecord(
                    topic: Self.topic,
                    certificatePEM: certificate.certificatePEM,
                    privateKeyPEM: stranger.privateKeyPEM,
                    notAfter: certificate.certificate.notValidAfter
                )
            )

            let outcome = await fixture.client.send(Self.push())

            guard case .failed(let reason) = outcome else {
                Issue.record("expected failure, got \(outcome)")
                return
            }
            #expect(reason.hasPrefix("push certificate of topic \(Self.topic) is unusable"))
            #expect(!reason.contains("PRIVATE KEY"))
            #expect(await fixture.mock.requests().isEmpty)
        }
    }

    @Test func expiredCertificateFailsWithoutARequest() async throws {
        try await APNsFixture.with { fixture in
            let certificate = try fixture.ca.issuePushCertificate(topic: Self.topic)
            let expiry = Date(timeIntervalSince1970: 1_700_000_000)
            try await fixture.store.savePushCertificate(
                PushCertificateRecord(
                    topic: Self.topic,
                    certificatePEM: certificate.certificatePEM,
                    privateKeyPEM: certificate.privateKeyPEM,
                    notAfter: expiry
                )
            )

            let outcome = await fixture.client.send(Self.push())

            #expect(
                outcome == .failed(reason: "push certificate of topic \(Self.topic) is unusable: expired \(expiry)"))
            #expect(await fixture.mock.requests().isEmpty)
        }
    }

    @Test func twoThousandConcurrentPushesToOneTopicAreDeliveredOverOneConnection() async throws {
        // Debug builds on a busy machine clear only about a hundred pushes a second, and every push waits for a
        // stream within its own timeout.
        try await APNsFixture.with(requestTimeout: .seconds(300)) { fixture in
            try await fixture.installCertificate(topic: Self.topic)
            let count = 2000

            let delivered = await withTaskGroup(of: Bool.self) { group in
                for index in 0..<count {
                    group.addTask {
                        let outcome = await fixture.client.send(Self.push(String(format: "%064x", index)))
                        if case .delivered = outcome { return true }
                        return false
                    }
                }
                return await group.reduce(0) { $0 + ($1 ? 1 : 0) }
            }

            #expect(delivered == count)
            let requests = try await fixture.mock.waitForRequests(count: count, timeout: .seconds(60))
            #expect(Set(requests.compactMap(\.token)).count == count)
            #expect(fixture.mock.acceptedConnectionCount() == 1)
        }
    }

    @Test func pushesAfterShutdownFailWithoutARequest() async throws {
        try await APNsFixture.with { fixture in
            try await fixture.installCertificate(topic: Self.topic)
            guard case .delivered = await fixture.client.send(Self.push()) else {
                Issue.record("expected delivery before shutdown")
                return
            }

            await fixture.client.shutdown()

            #expect(await fixture.client.send(Self.push()) == .failed(reason: "APNs client is shut down"))
            #expect(await fixture.mock.requests().count == 1)
            try await fixture.mock.waitForOpenConnections(atMost: 0)
        }
    }
}

@Suite(
    "APNsClient with certificates from PostgreSQL",
    .enabled(if: TestDatabase.isEnabled, "set MDM_TEST_DATABASE_URL or run deploy/local/test")
)
struct APNsClientPostgresTests {
    @Test func sealedPushCertificateFromPostgresIsPresentedToAPNs() async throws {
        try await TestDatabase.withFreshClient { database in
            let store = PostgresPushCertificateStore(
                client: database,
                logger: TestDatabase.quietLogger,
                keyEncryptionKey: SymmetricKey(size: .bits256)
            )
            try await APNsFixture.with(certificates: store) { fixture in
                let certificate = try fixture.ca.issuePushCertificate(topic: APNsClientTests.topic)
                try await store.savePushCertificate(
                    PushCertificateRecord(
                        topic: APNsClientTests.topic,
                        certificatePEM: certificate.certificatePEM,
                        privateKeyPEM: certificate.privateKeyPEM,
                        notAfter: certificate.certificate.notValidAfter
                    )
                )

                let outcome = await fixture.client.send(APNsClientTests.push())

                let request = try #require(try await fixture.mock.waitForRequests(count: 1).first)
                #expect(outcome == .delivered(apnsID: try #require(request.header("apns-id"))))
                #expect(request.clientCertificateSubject == certificate.certificate.subject.description)
            }
        }
    }
}

@Suite("APNs settings")
struct APNsConfigurationTests {
    @Test func defaultsAreProductionAPNsWithBoundedRetries() throws {
        let configuration = try APNsConfiguration(settings: Settings(arguments: [], environment: [:]))
        #expect(configuration.baseURL == "https://api.push.apple.com")
        #expect(configuration.additionalTrustRoots.isEmpty)
        #expect(configuration.maxAttempts == 4)
        #expect(configuration.retryBaseDelay == .milliseconds(500))
        #expect(configuration.retryMaxDelay == .seconds(10))
        #expect(configuration.requestTimeout == .seconds(30))
    }

    @Test func settingsAreReadFromFlagsAndEnvironment() throws {
        let pushCA = try TestCertificateAuthority.make(commonName: "Extra APNs root")
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("apns-ca-\(UUID().uuidString).pem")
        try Data(pushCA.certificatePEM.utf8).write(to: path)
        defer { try? FileManager.default.removeItem(at: path) }
        let settings = try Settings(
            arguments: ["--apns-url", "https://api.sandbox.push.apple.com/", "--apns-max-attempts=2"],
            environment: [
                "MDM_APNS_CA_CERTS": path.path,
                "MDM_APNS_RETRY_BASE_DELAY": "0.25",
                "MDM_APNS_RETRY_MAX_DELAY": "2",
                "MDM_APNS_TIMEOUT": "5",
            ]
        )
        let configuration = try APNsConfiguration(settings: settings)
        #expect(configuration.baseURL == "https://api.sandbox.push.apple.com")
        #expect(configuration.additionalTrustRoots.count == 1)
        #expect(configuration.maxAttempts == 2)
        #expect(configuration.retryBaseDelay == .milliseconds(250))
        #expect(configuration.retryMaxDelay == .seconds(2))
        #expect(configuration.requestTimeout == .seconds(5))
    }

    @Test(arguments: [
        ("MDM_APNS_URL", "http://api.push.apple.com"),
        ("MDM_APNS_URL", "https://api.push.apple.com/3/device"),
        ("MDM_APNS_CA_CERTS", "/nonexistent/apns-ca.pem"),
        ("MDM_APNS_MAX_ATTEMPTS", "0"),
        ("MDM_APNS_MAX_ATTEMPTS", "many"),
        ("MDM_APNS_RETRY_BASE_DELAY", "-1"),
        ("MDM_APNS_RETRY_MAX_DELAY", "0.1"),
        ("MDM_APNS_TIMEOUT", "0"),
    ])
    func invalidValueFailsNamingTheSetting(setting: String, value: String) throws {
        let settings = try Settings(arguments: [], environment: [setting: value])
        #expect {
            try APNsConfiguration(settings: settings)
        } throws: { error in
            (error as? ConfigurationError)?.setting == setting
        }
    }

    @Test func pushKeyEncryptionKeyMustBeBase64OfThirtyTwoBytes() throws {
        let valid = Data(repeating: 7, count: 32).base64EncodedString()
        let key = try Settings(arguments: [], environment: ["MDM_PUSH_KEY_ENCRYPTION_KEY": valid])
            .pushKeyEncryptionKey()
        #expect(key?.symmetricKey.bitCount == 256)
        #expect(try Settings(arguments: [], environment: [:]).pushKeyEncryptionKey() == nil)

        for invalid in [Data(repeating: 7, count: 16).base64EncodedString(), "not base64!"] {
            let settings = try Settings(arguments: [], environment: ["MDM_PUSH_KEY_ENCRYPTION_KEY": invalid])
            #expect {
                try settings.pushKeyEncryptionKey()
            } throws: { error in
                (error as? ConfigurationError)?.setting == "MDM_PUSH_KEY_ENCRYPTION_KEY"
            }
        }
    }
}

/// A mock APNs trusting a fresh push CA, an in-memory certificate store and a client wired to both.
struct APNsFixture: Sendable {
    let ca: TestCertificateAuthority
    let mock: MockAPNs
    let store: MemoryPushCertificateStore
    let client: APNsClient

    static let logger: Logger = {
        var logger = Logger(label: "mdm.test.apns")
        logger.logLevel =
            ProcessInfo.processInfo.environment["MDM_TEST_LOG_LEVEL"].flatMap { Logger.Level(rawValue: $0) }
            ?? .critical
        return logger
    }()

    /// - Parameter certificates: where the client reads certificates; `store` (in memory) when `nil`.
    static func with(
        maxAttempts: Int = 4,
        requestTimeout: Duration = .seconds(60),
        certificates: (any PushCertificateStore)? = nil,
        _ body: (APNsFixture) async throws -> Void
    ) async throws {
        let ca = try TestCertificateAuthority.make(commonName: "Push CA")
        let mock = try await MockAPNs.start(trustRoots: [ca.certificate])
        let configuration = APNsConfiguration(
            baseURL: mock.baseURL,
            additionalTrustRoots: [try NIOSSLCertificate(bytes: Array(mock.serverTrustRootPEM.utf8), format: .pem)],
            maxAttempts: maxAttempts,
            retryBaseDelay: .milliseconds(5),
            retryMaxDelay: .milliseconds(20),
            requestTimeout: requestTimeout
        )
        let store = MemoryPushCertificateStore()
        let client: APNsClient
        do {
            client = try APNsClient(configuration: configuration, certificates: certificates ?? store, logger: logger)
        } catch {
            try? await mock.shutdown()
            throw error
        }
        let fixture = APNsFixture(ca: ca, mock: mock, store: store, client: client)
        do {
            try await body(fixture)
        } catch {
            await client.shutdown()
            try? await mock.shutdown()
            throw error
        }
        await client.shutdown()
        try await mock.shutdown()
    }

    /// Issues a push certificate for `topic` and stores it, replacing any earlier one.
    @discardableResult
    func installCertificate(topic: String) async throws -> TestDeviceIdentity {
        let identity = try ca.issuePushCertificate(topic: topic)
        try await store.savePushCertificate(
            PushCertificateRecord(
                topic: topic,
                certificatePEM: identity.certificatePEM,
                privateKeyPEM: identity.privateKeyPEM,
                notAfter: identity.certificate.notValidAfter
            )
        )
        return identity
    }
}

/// Push certificates in memory, counting lookups; can fail the next lookup.
final class MemoryPushCertificateStore: PushCertificateStore {
    private struct State {
        var records: [String: PushCertificateRecord] = [:]
        var fetchCount = 0
        var nextFailure: (any Error)?
    }

    private let state = Mutex(State())

    var fetchCount: Int {
        state.withLock { $0.fetchCount }
    }

    func failNextFetch(with error: any Error) {
        state.withLock { $0.nextFailure = error }
    }

    func savePushCertificate(_ record: PushCertificateRecord) async throws {
        state.withLock { $0.records[record.topic] = record }
    }

    func fetchPushCertificate(topic: String) async throws -> PushCertificateRecord? {
        let (record, failure) = state.withLock { state in
            state.fetchCount += 1
            defer { state.nextFailure = nil }
            return (state.records[topic], state.nextFailure)
        }
        if let failure { throw failure }
        return record
    }
}
