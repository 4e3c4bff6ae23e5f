import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOHTTP2
import NIOPosix
import NIOSSL
import Synchronization
import X509

/// Why the mock APNs server could not do what a test asked.
package enum MockAPNsError: Error, Sendable, Equatable {
    case noLocalPort
    case timedOut(expected: Int, received: Int)
}

/// A stand-in for Apple's push gateway: HTTP/2 over mutually authenticated TLS on 127.0.0.1, answering
/// `POST /3/device/<token>` like APNs and recording every request.
package final class MockAPNs: Sendable {
    /// One request as the mock received it.
    package struct Recorded: Sendable {
        package let method: String
        package let path: String
        /// Header names lowercased, in arrival order.
        package let headers: [(name: String, value: String)]
        package let body: [UInt8]
        /// The subject of the client certificate the connection presented, e.g. `CN=com.apple.mgmt.test`.
        package let clientCertificateSubject: String

        /// The first value of a header, by case-insensitive name.
        package func header(_ name: String) -> String? {
            let name = name.lowercased()
            return headers.first { $0.name == name }?.value
        }

        /// The device token of a `/3/device/<token>` path.
        package var token: String? {
            path.hasPrefix(devicePathPrefix) ? String(path.dropFirst(devicePathPrefix.count)) : nil
        }
    }

    /// A scripted answer for one device token.
    package enum Behaviour: Sendable, Equatable {
        /// 410 `Unregistered` with a timestamp, for every request until replaced.
        case unregistered
        /// 400 `BadDeviceToken`, for every request until replaced.
        case badDeviceToken
        /// 429 `TooManyRequests` for the next `times` requests, then success.
        case tooManyRequests(times: Int)
        /// 500 `InternalServerError` for the next `times` requests, then success.
        case internalServerError(times: Int)
        /// For the next request: a GOAWAY frame on its connection instead of an answer, then the connection closes.
        case goAway
        /// No answer until `release(_:)`, then 200, for every request until replaced: keeps a push in flight.
        case hold
    }

    package let port: Int
    /// The CA that issued the mock's server certificate; clients trust it.
    package let serverTrustRoot: Certificate
    package let serverTrustRootPEM: String
    private let serverChannel: any Channel
    private let state: Mutex<State>
    private let log = AwaitableLog<Recorded> { MockAPNsError.timedOut(expected: $0, received: $1) }

    /// Where the mock answers escrow key unlock requests (200), as Apple's device services do.
    package static let escrowKeyUnlockPath = "/deviceservicesworkers/escrowKeyUnlock"

    package var baseURL: String {
        "https://127.0.0.1:\(port)"
    }

    private init(port: Int, identity: MockAPNsServerIdentity, serverChannel: any Channel) {
        self.port = port
        self.serverTrustRoot = identity.trustRoot
        self.serverTrustRootPEM = identity.trustRootPEM
        self.serverChannel = serverChannel
        self.state = Mutex(State())
    }

    /// Starts listening on an ephemeral port of 127.0.0.1, accepting only client certificates that chain to
    /// `trustRoots` (the CA of the push certificates).
    package static func start(
        trustRoots: [Certificate],
        logger: Logger = Logger(label: "mdm.test.mock-apns")
    ) async throws -> MockAPNs {
        let identity = try MockAPNsServerIdentity.make()
        var tls = TLSConfiguration.makeServerConfiguration(
            certificateChain: [.certificate(identity.serverCertificate)],
            privateKey: .privateKey(identity.serverKey)
        )
        tls.certificateVerification = .noHostnameVerification
        tls.trustRoots = .certificates(try trustRoots.map(NIOSSLCertificate.init(certificate:)))
        tls.applicationProtocols = ["h2"]
        let sslContext = try NIOSSLContext(configuration: tls)
        let recorder = Recorder()

        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try Self.configureConnection(channel, sslContext: sslContext, recorder: recorder, logger: logger)
                }
            }
            .bind(host: "127.0.0.1", port: 0)
            .get()
        guard let port = channel.localAddress?.port else {
            try await channel.close()
            throw MockAPNsError.noLocalPort
        }
        let mock = MockAPNs(port: port, identity: identity, serverChannel: channel)
        recorder.mock.withLock { $0 = mock }
        return mock
    }

    /// Stops listening and closes every open connection.
    package func shutdown() async throws {
        let connections = state.withLock { state in
            state.isShutDown = true
            return Array(state.connections.values)
        }
        try await serverChannel.close()
        for connection in connections {
            try? await connection.close()
        }
    }

    /// Scripts the answers for `token` (hex, as in the request path).
    package func respond(to token: String, with behaviour: Behaviour) {
        state.withLock { $0.behaviours[token.lowercased()] = behaviour }
    }

    /// Answers 200 to every request held for `token` (`Behaviour.hold`) and stops holding new ones.
    package func release(_ token: String) {
        let held = state.withLock { state in
            let key = token.lowercased()
            if state.behaviours[key] == .hold {
                state.behaviours[key] = nil
            }
            return state.held.removeValue(forKey: key) ?? []
        }
        for answer in held {
            answer()
        }
    }

    func hold(_ token: String, answer: @escaping @Sendable () -> Void) {
        let heldNow = state.withLock { state in
            let key = token.lowercased()
            guard state.behaviours[key] == .hold else { return false }
            state.held[key, default: []].append(answer)
            return true
        }
        if !heldNow {
            answer()
        }
    }

    /// Connections accepted since the start (TCP connections, whether or not their TLS handshake succeeded).
    package func acceptedConnectionCount() -> Int {
        state.withLock { $0.acceptedConnections }
    }

    /// Waits until at most `count` connections are open.
    package func waitForOpenConnections(atMost count: Int, timeout: Duration = .seconds(60)) async throws {
        let deadline = ContinuousClock.now + timeout
        while true {
            let (open, closing) = state.withLock { state in
                (state.connections.count, state.connections.values.map(\.closeFuture))
            }
            if open <= count { return }
            guard ContinuousClock.now < deadline else {
                throw MockAPNsError.timedOut(expected: count, received: open)
            }
            await Self.firstClose(of: closing, deadline: deadline)
        }
    }

    /// Returns when any of `closeFutures` completes, or at `deadline`.
    private static func firstClose(of closeFutures: [EventLoopFuture<Void>], deadline: ContinuousClock.Instant) async {
        let resumed = ResumeOnce()
        let timer = Task {
            try? await Task.sleep(until: deadline, clock: .continuous)
        }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let resume: @Sendable () -> Void = {
                if resumed.claim() { continuation.resume() }
            }
            for future in closeFutures {
                future.whenComplete { _ in resume() }
            }
            Task {
                await timer.value
                resume()
            }
        }
        timer.cancel()
    }

    /// Every request received so far, in arrival order.
    package func requests() async -> [Recorded] {
        log.items
    }

    /// Waits until at least `count` requests have been received and returns all of them.
    package func waitForRequests(count: Int, timeout: Duration = .seconds(60)) async throws -> [Recorded] {
        try await log.wait(count: count, timeout: timeout)
    }

    /// Records `request` and decides its answer.
    func receive(_ request: Recorded) -> Outcome {
        let outcome = state.withLock { $0.outcome(for: request) }
        log.append(request)
        return outcome
    }

    fileprivate func track(_ channel: any Channel) {
        let isShutDown = state.withLock { state in
            if !state.isShutDown {
                state.connections[ObjectIdentifier(channel)] = channel
                state.acceptedConnections += 1
            }
            return state.isShutDown
        }
        if isShutDown {
            channel.close(promise: nil)
            return
        }
        channel.closeFuture.whenComplete { [weak self] _ in
            _ = self?.state.withLock { $0.connections.removeValue(forKey: ObjectIdentifier(channel)) }
        }
    }

    private static func configureConnection(
        _ channel: any Channel,
        sslContext: NIOSSLContext,
        recorder: Recorder,
        logger: Logger
    ) throws {
        if let mock = recorder.mock.withLock({ $0 }) {
            mock.track(channel)
        }
        let sync = channel.pipeline.syncOperations
        try sync.addHandler(NIOSSLServerHandler(context: sslContext))
        var connectionConfiguration = NIOHTTP2Handler.ConnectionConfiguration()
        connectionConfiguration.initialSettings = [
            HTTP2Setting(parameter: .maxConcurrentStreams, value: 1000),
            HTTP2Setting(parameter: .maxHeaderListSize, value: 16384),
        ]
        // A test double, not an edge server: swift-nio-http2's abuse heuristics (empty DATA
        // frames in a row, stream errors per connection) must not drop a client's connection
        // when a loaded machine splits a burst of requests into unusual frame sequences.
        connectionConfiguration.maximumSequentialEmptyDataFrames = 10_000
        connectionConfiguration.maximumConnectionGlitches = 100_000
        // Seen in a full run: a burst's client resets (RST_STREAM) passed the default 200 per
        // 30 s, and the mock closed the connection (ExcessiveRSTFrames).
        var streamConfiguration = NIOHTTP2Handler.StreamConfiguration()
        streamConfiguration.streamResetFrameRateLimit.maximumCount = 100_000
        streamConfiguration.streamErrorRateLimit.maximumCount = 100_000
        _ = try sync.configureHTTP2Pipeline(
            mode: .server,
            connectionConfiguration: connectionConfiguration,
            streamConfiguration: streamConfiguration
        ) { stream in
            stream.eventLoop.makeCompletedFuture {
                try stream.pipeline.syncOperations.addHandlers(
                    HTTP2FramePayloadToHTTP1ServerCodec(),
                    MockAPNsStreamHandler(recorder: recorder, logger: logger)
                )
            }
        }
        try sync.addHandler(MockAPNsConnectionErrorHandler(logger: logger))
    }
}

private let devicePathPrefix = "/3/device/"

/// Lets exactly one of several racing callbacks resume a continuation.
private final class ResumeOnce: Sendable {
    private let claimed = Mutex(false)

    func claim() -> Bool {
        claimed.withLock { claimed in
            defer { claimed = true }
            return !claimed
        }
    }
}

/// Lets connections reach the mock, which exists only once the listening socket is bound.
final class Recorder: Sendable {
    let mock = Mutex<MockAPNs?>(nil)
}

enum Outcome {
    case reply(status: HTTPResponseStatus, body: String?)
    case goAway
    case hold(token: String)
}

private struct State {
    var behaviours: [String: MockAPNs.Behaviour] = [:]
    var connections: [ObjectIdentifier: any Channel] = [:]
    var acceptedConnections = 0
    var held: [String: [@Sendable () -> Void]] = [:]
    var isShutDown = false

    mutating func outcome(for request: MockAPNs.Recorded) -> Outcome {
        // Apple's escrow key unlock endpoint shares the push certificate's mutual TLS.
        if request.path.hasPrefix(MockAPNs.escrowKeyUnlockPath), request.method == "POST" {
            return .reply(status: .ok, body: #"{"status":"unlocked"}"#)
        }
        guard let token = request.token, !token.isEmpty, !token.contains("/") else {
            return .reply(status: .notFound, body: #"{"reason":"BadPath"}"#)
        }
        guard request.method == "POST" else {
            return .reply(status: .methodNotAllowed, body: #"{"reason":"MethodNotAllowed"}"#)
        }
        let key = token.lowercased()
        switch behaviours[key] {
        case nil:
            return .reply(status: .ok, body: nil)
        case .unregistered:
            let timestamp = Int(Date().timeIntervalSince1970 * 1000)
            return .reply(status: .gone, body: #"{"reason":"Unregistered","timestamp":\#(timestamp)}"#)
        case .badDeviceToken:
            return .reply(status: .badRequest, body: #"{"reason":"BadDeviceToken"}"#)
        case .tooManyRequests(let times):
            behaviours[key] = times > 1 ? .tooManyRequests(times: times - 1) : nil
            guard times > 0 else { return .reply(status: .ok, body: nil) }
            return .reply(status: .tooManyRequests, body: #"{"reason":"TooManyRequests"}"#)
        case .internalServerError(let times):
            behaviours[key] = times > 1 ? .internalServerError(times: times - 1) : nil
            guard times > 0 else { return .reply(status: .ok, body: nil) }
            return .reply(status: .internalServerError, body: #"{"reason":"InternalServerError"}"#)
        case .goAway:
            behaviours[key] = nil
            return .goAway
        case .hold:
            return .hold(token: key)
        }
    }
}
