import AsyncHTTPClient
import Foundation
import Hummingbird
import Logging
import MDMBus
import MDMServerSupport
import MDMTestSupport
import NIOCore
import NIOHTTP1
import NIOSSL
import Testing

@testable import APIService
@testable import CheckinService
@testable import CommandService

/// Learns the port a server bound (tests bind port 0).
struct PortReporter: Sendable {
    let ports: AsyncStream<Int>
    private let continuation: AsyncStream<Int>.Continuation

    init() {
        (ports, continuation) = AsyncStream.makeStream(of: Int.self)
    }

    var report: @Sendable (Int) async -> Void {
        { [continuation] port in continuation.yield(port) }
    }

    /// No port will come (the server stopped).
    func finish() {
        continuation.finish()
    }
}

/// Runs `app` on an ephemeral loopback port while `body` runs, then shuts it down. When the
/// server fails before it listens, its error is thrown (instead of waiting for a port forever).
func withRunningApplication<T: Sendable>(
    _ app: some ApplicationProtocol,
    reporter: PortReporter,
    _ body: (Int) async throws -> T
) async throws -> T {
    try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask {
            defer { reporter.finish() }
            try await app.run()
        }
        defer { group.cancelAll() }
        var iterator = reporter.ports.makeAsyncIterator()
        guard let port = await iterator.next() else {
            try await group.next()
            throw TestStackError.serverDidNotStart
        }
        return try await body(port)
    }
}

enum TestStackError: Error {
    case serverDidNotStart
}

/// A whole SwiftMDM minus the push path, in this process: CheckinService, CommandService and
/// APIService on their own loopback ports, a fresh migrated PostgreSQL database, a test CA.
struct TestStack: Sendable {
    var checkinURL: String
    var commandURL: String
    var apiURL: String
    var apiKey: String
    var ca: TestCertificateAuthority
    var database: TestDatabase
    /// Each role's own metrics (what its `/metrics` shows), so tests can count exactly.
    var checkinMetrics = MDMMetrics()
    var commandMetrics = MDMMetrics()
    var apiMetrics = MDMMetrics()

    /// `http://127.0.0.1:<port>` of CheckinService and CommandService.
    var checkinBaseURL: String { String(checkinURL.dropLast("/checkin".count)) }
    var commandBaseURL: String { String(commandURL.dropLast("/mdm".count)) }

    static let logger: Logger = {
        var logger = Logger(label: "swiftmdm.test")
        logger.logLevel =
            ProcessInfo.processInfo.environment["MDM_TEST_LOG_LEVEL"].flatMap { Logger.Level(rawValue: $0) }
            ?? .critical
        return logger
    }()

    /// Connections per role's pool: small, because every test runs a stack at once.
    static let databasePoolSize = 4
    /// How long a test request may take: every suite runs at once on two cores, so a request
    /// can wait behind hundreds of others. A hung server still fails the test.
    static let requestTimeout: TimeAmount = .seconds(60)

    struct Options: Sendable {
        var identity: DeviceIdentityConfiguration?
        var declarativeManagement: DeclarativeManagementConfiguration?
        var zeroLengthChallenge = false
        var tokenHandlers: [String: any GetTokenHandler] = [:]
        var maxBodyBytes = ServerConfiguration.defaultMaxBodyBytes
        var retro = false
        var authProxyURL: URL?
        /// The API's push bus (Redis) and stream; without it pushes stay in the outbox.
        var apiRedis: RedisConfiguration?
        var pushStream = RedisPushBus.defaultStream
        var pushWaitTimeout: Duration = .seconds(10)
        var migrationEnabled = false
        var escrowKeyUnlockURL: String?
        var escrowKeyUnlockTrustRoots: [NIOSSLCertificate]?
        /// Record webhook events (as with `MDM_WEBHOOK_URL` set); delivery is the test's to run.
        var webhook = false
    }

    /// Starts the stack, runs `body`, tears everything down (the database too).
    static func with<T: Sendable>(options: Options = Options(), _ body: (TestStack) async throws -> T) async throws -> T
    {
        let database = try await TestDatabase.create(logger: logger)
        let ca = try TestCertificateAuthority.make()
        var identity = options.identity ?? DeviceIdentityConfiguration(trustRoots: [ca.certificate])
        identity.retro = options.retro || identity.retro
        let server = ServerConfiguration(
            host: "127.0.0.1",
            port: 0,
            databaseURL: database.url,
            databasePoolSize: Self.databasePoolSize,
            maxBodyBytes: options.maxBodyBytes
        )
        let apiKey = "test-api-key-\(UUID().uuidString)"
        let checkinMetrics = MDMMetrics()
        let commandMetrics = MDMMetrics()
        let apiMetrics = MDMMetrics()
        do {
            let checkinReporter = PortReporter()
            var checkinConfiguration = CheckinConfiguration(
                server: server,
                identity: identity,
                declarativeManagement: options.declarativeManagement,
                userAuthenticateZeroLengthChallenge: options.zeroLengthChallenge,
                recordWebhookEvents: options.webhook
            )
            checkinConfiguration.authProxyURL = options.authProxyURL
            let checkin = try buildCheckinApplication(
                configuration: checkinConfiguration,
                logger: logger,
                tokenHandlers: options.tokenHandlers,
                metrics: checkinMetrics,
                onServerRunning: checkinReporter.report
            )
            let commandReporter = PortReporter()
            let command = try buildCommandApplication(
                configuration: CommandConfiguration(
                    server: server, identity: identity, recordWebhookEvents: options.webhook),
                logger: logger,
                metrics: commandMetrics,
                onServerRunning: commandReporter.report
            )
            let apiReporter = PortReporter()
            var apiConfiguration = APIConfiguration(server: server, apiKey: apiKey, redis: options.apiRedis)
            apiConfiguration.pushStream = options.pushStream
            apiConfiguration.pushWaitTimeout = options.pushWaitTimeout
            if let url = options.escrowKeyUnlockURL { apiConfiguration.escrowKeyUnlockURL = url }
            apiConfiguration.escrowKeyUnlockTrustRoots = options.escrowKeyUnlockTrustRoots
            apiConfiguration.migrationEnabled = options.migrationEnabled
            let api = try buildAPIApplication(
                configuration: apiConfiguration,
                logger: logger,
                metrics: apiMetrics,
                onServerRunning: apiReporter.report
            )
            let result = try await withRunningApplication(checkin, reporter: checkinReporter) { checkinPort in
                try await withRunningApplication(command, reporter: commandReporter) { commandPort in
                    try await withRunningApplication(api, reporter: apiReporter) { apiPort in
                        let stack = TestStack(
                            checkinURL: "http://127.0.0.1:\(checkinPort)/checkin",
                            commandURL: "http://127.0.0.1:\(commandPort)/mdm",
                            apiURL: "http://127.0.0.1:\(apiPort)",
                            apiKey: apiKey,
                            ca: ca,
                            database: database,
                            checkinMetrics: checkinMetrics,
                            commandMetrics: commandMetrics,
                            apiMetrics: apiMetrics
                        )
                        return try await body(stack)
                    }
                }
            }
            try await database.drop()
            return result
        } catch {
            try? await database.drop()
            throw error
        }
    }

    /// A new simulated device whose identity the stack's CA issued.
    func makeDevice(
        udid: String = UUID().uuidString,
        keyKind: TestKeyKind = .p256,
        transport: DeviceTransport = .signature(.modern),
        topic: String = "com.apple.mgmt.External.test-topic"
    ) throws -> SimulatedDevice {
        SimulatedDevice(
            udid: udid,
            identity: try ca.issueDeviceIdentity(commonName: udid, keyKind: keyKind),
            checkinURL: checkinURL,
            commandURL: commandURL,
            transport: transport,
            topic: topic
        )
    }

    // MARK: API calls

    struct APIReply: Sendable {
        var status: Int
        var body: Data
        var headers: [(String, String)]

        func json() throws -> [String: Any] {
            try #require(try JSONSerialization.jsonObject(with: body) as? [String: Any])
        }
    }

    func api(
        _ method: HTTPMethod,
        _ path: String,
        body: Data? = nil,
        authorization: String? = "bearer"
    ) async throws -> APIReply {
        var request = HTTPClientRequest(url: apiURL + path)
        request.method = method
        switch authorization {
        case "bearer": request.headers.add(name: "Authorization", value: "Bearer \(apiKey)")
        case "basic":
            let token = Data("nanomdm:\(apiKey)".utf8).base64EncodedString()
            request.headers.add(name: "Authorization", value: "Basic \(token)")
        case .some(let value): request.headers.add(name: "Authorization", value: value)
        case .none: break
        }
        if let body { request.body = .bytes(ByteBuffer(bytes: body)) }
        let response = try await HTTPClient.shared.execute(request, timeout: TestStack.requestTimeout)
        let data = try await response.body.collect(upTo: 64 * 1024 * 1024)
        return APIReply(
            status: Int(response.status.code),
            body: Data(data.readableBytesView),
            headers: response.headers.map { ($0.name, $0.value) }
        )
    }

    /// Enqueues `command` to `ids` and returns the reply, requiring success.
    @discardableResult
    func enqueue(_ command: Data, to ids: [String], query: String = "?nopush=1") async throws -> APIReply {
        try await api(.PUT, "/v1/enqueue/" + ids.joined(separator: ",") + query, body: command)
    }
}

/// Builds a command plist with a fresh (or given) UUID.
func makeCommand(_ requestType: String = "ProfileList", uuid: String = UUID().uuidString, extra: [String: Any] = [:])
    throws -> (uuid: String, plist: Data)
{
    var command: [String: Any] = ["RequestType": requestType]
    command.merge(extra) { _, new in new }
    let plist = try PropertyListSerialization.data(
        fromPropertyList: ["CommandUUID": uuid, "Command": command],
        format: .xml,
        options: 0
    )
    return (uuid, plist)
}
