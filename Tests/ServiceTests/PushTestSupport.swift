import Foundation
import Hummingbird
import MDMBus
import MDMServerSupport
import MDMTestSupport
import NIOSSL
import PostgresNIO
import Testing

@testable import PushService

extension PushConfiguration {
    /// PushService tuned for tests: short idle and re-drive times so recovery paths run in
    /// seconds, and quick APNs retries.
    static func forTests(
        server: ServerConfiguration,
        redis: RedisConfiguration,
        stream: String? = nil,
        apns: APNsConfiguration = APNsConfiguration(),
        consumerName: String = "test-\(UUID().uuidString.prefix(8))"
    ) throws -> PushConfiguration {
        var worker = PushWorkerSettings(consumerName: consumerName)
        // Short enough for recovery tests, long enough that a loaded machine's keep-alive
        // (every third of it) is not outrun.
        worker.reclaimIdle = .seconds(5)
        worker.reclaimInterval = .milliseconds(500)
        worker.redriveInterval = .milliseconds(500)
        worker.redriveAfter = .seconds(2)
        var configuration = PushConfiguration(server: server, redis: redis, apns: apns, worker: worker)
        if let stream { configuration.stream = stream }
        return configuration
    }
}

/// A `TestStack` with the push path: the API publishes to a stream of its own on Redis, an
/// in-process PushService consumes it and talks HTTP/2 to a mock APNs that accepts client
/// certificates of `pushCA`.
struct PushStack: Sendable {
    var stack: TestStack
    var apns: MockAPNs
    var pushCA: TestCertificateAuthority
    var redis: RedisConfiguration
    var stream: String
    var pushConfiguration: PushConfiguration

    struct Options: Sendable {
        /// Another Redis than the shared test server (one a test stops and starts).
        var redisURL: String?
        /// Start PushService only when the test calls `runPushService`.
        var startPushService = true
        var apnsMaxAttempts = 4
        var waitTimeout: Duration = .seconds(60)
        /// `MDM_PUSH_EXPIRATION`.
        var pushExpiration: Duration?
    }

    static func with<T: Sendable>(
        options: Options = Options(),
        _ body: (PushStack) async throws -> T
    ) async throws -> T {
        let redis = try RedisConfiguration(url: try options.redisURL ?? TestRedis.url())
        let stream = TestRedis.keyspace("push").key("requests")
        let pushCA = try TestCertificateAuthority.make(commonName: "Push CA")
        let apns = try await MockAPNs.start(trustRoots: [pushCA.certificate])
        do {
            var stackOptions = TestStack.Options()
            stackOptions.apiRedis = redis
            stackOptions.pushStream = stream
            stackOptions.pushWaitTimeout = options.waitTimeout
            let apnsTrustRoot = try NIOSSLCertificate(bytes: Array(apns.serverTrustRootPEM.utf8), format: .pem)
            // Apple's escrow key unlock endpoint is played by the mock too.
            stackOptions.escrowKeyUnlockURL = apns.baseURL + MockAPNs.escrowKeyUnlockPath
            stackOptions.escrowKeyUnlockTrustRoots = [apnsTrustRoot]
            let result = try await TestStack.with(options: stackOptions) { stack in
                let server = ServerConfiguration(
                    host: "127.0.0.1", port: 0, databaseURL: stack.database.url, databasePoolSize: 4)
                let apnsConfiguration = APNsConfiguration(
                    baseURL: apns.baseURL,
                    additionalTrustRoots: [
                        try NIOSSLCertificate(bytes: Array(apns.serverTrustRootPEM.utf8), format: .pem)
                    ],
                    maxAttempts: options.apnsMaxAttempts,
                    retryBaseDelay: .milliseconds(20),
                    retryMaxDelay: .milliseconds(100)
                )
                var pushConfiguration = try PushConfiguration.forTests(
                    server: server, redis: redis, stream: stream, apns: apnsConfiguration)
                pushConfiguration.pushExpiration = options.pushExpiration
                let push = PushStack(
                    stack: stack,
                    apns: apns,
                    pushCA: pushCA,
                    redis: redis,
                    stream: stream,
                    pushConfiguration: pushConfiguration
                )
                guard options.startPushService else { return try await body(push) }
                return try await push.runPushService { try await body(push) }
            }
            try await apns.shutdown()
            return result
        } catch {
            try? await apns.shutdown()
            throw error
        }
    }

    /// Runs a PushService replica while `body` runs.
    func runPushService<T: Sendable>(_ body: () async throws -> T) async throws -> T {
        let reporter = PortReporter()
        let app = try buildPushApplication(
            configuration: pushConfiguration, logger: TestStack.logger, onServerRunning: reporter.report)
        return try await withRunningApplication(app, reporter: reporter) { _ in try await body() }
    }

    /// Uploads a push certificate for `topic` through the API and returns it.
    @discardableResult
    func uploadPushCertificate(topic: String) async throws -> TestDeviceIdentity {
        let certificate = try pushCA.issuePushCertificate(topic: topic)
        let reply = try await stack.api(
            .PUT, "/v1/pushcert", body: Data((certificate.certificatePEM + certificate.privateKeyPEM).utf8))
        try #require(reply.status == 200, "push certificate upload answered \(reply.status)")
        return certificate
    }

    /// A device on `topic` that has enrolled (so it has push info).
    func enrolledDevice(topic: String) async throws -> SimulatedDevice {
        let device = try stack.makeDevice(topic: topic)
        try await device.enroll()
        return device
    }
}

extension SimulatedDevice {
    /// The APNs token as it appears in the request path.
    var tokenHex: String {
        token.map { String(format: "%02x", $0) }.joined()
    }
}

extension TestDatabase {
    /// The integer the query returns (a `count(*)`).
    func count(_ sql: String) async throws -> Int {
        try await withClient { client in
            for try await value in try await client.query(PostgresQuery(unsafeSQL: sql)).decode(Int.self) {
                return value
            }
            return 0
        }
    }
}
