import AsyncHTTPClient
import Foundation
import Logging
import MDMServerSupport
import MDMStorage
import NIOCore
import Synchronization

/// One MDM push to send: a device channel's push info and the certificate version the worker saw.
struct APNsPush: Sendable, Hashable {
    /// The push topic, e.g. `com.apple.mgmt.External.<uuid>`.
    var topic: String
    /// Hex, as stored in `enrollments.token_hex`.
    var deviceToken: String
    var pushMagic: String
    /// `push_certificates.updated_at` of the topic as the worker read it: a newer value than the one the
    /// client holds makes it load the certificate again.
    var certificateVersion: Date
    /// Sent as `apns-expiration` (unix seconds) when set.
    var expiration: Date?

    init(topic: String, deviceToken: String, pushMagic: String, certificateVersion: Date, expiration: Date? = nil) {
        self.topic = topic
        self.deviceToken = deviceToken
        self.pushMagic = pushMagic
        self.certificateVersion = certificateVersion
        self.expiration = expiration
    }
}

/// What became of a push.
enum APNsOutcome: Sendable, Equatable {
    /// 200: APNs accepted it; the `apns-id` it answered with.
    case delivered(apnsID: String)
    /// 410: the token is no longer valid, since the time APNs gives (milliseconds in its JSON body).
    case unregistered(since: Date?, reason: String)
    /// A permanent refusal (400 `BadDeviceToken`, 403, 404, 413, …) with APNs's `reason`.
    case rejected(status: Int, reason: String)
    /// Not delivered and worth trying later: retries exhausted, no usable certificate for the topic, APNs
    /// unreachable.
    case failed(reason: String)
}

/// Sends MDM pushes to APNs over HTTP/2 (PROTOCOL.md §6), one pooled client per topic presenting the topic's
/// push certificate. Safe to call from thousands of tasks at once; call `shutdown()` before releasing it.
///
/// Certificates load lazily and stay cached per topic. A push carrying a newer `certificateVersion` than the
/// cached one loads the certificate again and moves the topic to a new pool; the old pool closes once its
/// in-flight requests are answered. A push carrying an older version (read before an upload) uses the
/// cached certificate. A topic without a usable certificate is remembered for
/// `APNsConfiguration.certificateMissRetention`; a store error is not remembered.
final class APNsClient: Sendable {
    private let configuration: APNsConfiguration
    private let certificates: any PushCertificateStore
    private let logger: Logger
    private let state = Mutex(State())

    init(configuration: APNsConfiguration, certificates: any PushCertificateStore, logger: Logger) throws {
        guard let baseURL = APNsConfiguration.normalizedBaseURL(configuration.baseURL) else {
            throw ConfigurationError(
                setting: "MDM_APNS_URL", problem: "expected https://host[:port], got \(configuration.baseURL)")
        }
        guard configuration.maxAttempts >= 1 else {
            throw ConfigurationError(setting: "MDM_APNS_MAX_ATTEMPTS", problem: "must be at least 1")
        }
        var configuration = configuration
        configuration.baseURL = baseURL
        self.configuration = configuration
        self.certificates = certificates
        self.logger = logger
    }

    func send(_ push: APNsPush) async -> APNsOutcome {
        var logger = self.logger
        logger[metadataKey: LogKey.apnsTopic] = "\(push.topic)"
        logger[metadataKey: LogKey.apnsTokenPrefix] = "\(push.deviceToken.prefix(8))"
        guard let token = Self.normalizedToken(push.deviceToken) else {
            logger.debug("device token is not hex; not sent")
            return .rejected(status: 400, reason: "BadDeviceToken")
        }
        let apnsID = UUID().uuidString.lowercased()
        let request = makeRequest(push, token: token, apnsID: apnsID)
        var attempt = 0
        var resentAfterDrop = false
        while true {
            attempt += 1
            let connection: APNsTopicConnection
            switch await lease(for: push) {
            case .success(let leased): connection = leased
            case .failure(let failure): return .failed(reason: failure.reason)
            }
            let started = ContinuousClock.now
            let answer = await connection.execute(request, timeout: configuration.requestTimeout)
            connection.release()

            switch answer {
            case .response(let status, let answeredID, _) where (200..<300).contains(status):
                return .delivered(apnsID: answeredID ?? apnsID)
            case .response(let status, _, let body):
                let error = APNsErrorBody(body)
                switch status {
                case 410:
                    return .unregistered(since: error.timestamp, reason: error.reason ?? "Unregistered")
                case 429, 500..<600:
                    let reason = "\(status) \(error.reason ?? "")".trimmingCharacters(in: .whitespaces)
                    guard attempt < configuration.maxAttempts else {
                        return .failed(reason: "APNs answered \(reason) to all \(attempt) attempts")
                    }
                    logger.debug("APNs answered \(reason); retrying", metadata: ["attempt": "\(attempt)"])
                    do {
                        try await Task.sleep(for: backoff(afterAttempt: attempt))
                    } catch {
                        return .failed(reason: "cancelled while waiting to retry after APNs answered \(reason)")
                    }
                default:
                    return .rejected(status: status, reason: error.reason ?? "HTTP \(status)")
                }
            case .transportFailure(let error):
                // A GOAWAY, a reset stream or a dropped connection leaves the request's fate unknown. A duplicate
                // MDM push only makes the device check in once more, so it is sent again, once; the pool opens a
                // new connection if the old one is gone.
                let usedItsTime = ContinuousClock.now - started >= configuration.requestTimeout
                guard !usedItsTime, Self.isResendable(error), !resentAfterDrop, attempt < configuration.maxAttempts
                else {
                    return .failed(reason: "APNs request failed: \(Self.describe(error))")
                }
                logger.debug("APNs connection dropped; resending", metadata: ["error": "\(Self.describe(error))"])
                resentAfterDrop = true
            }
        }
    }

    /// Closes every pooled connection; pushes still in flight fail and later ones answer `.failed`.
    func shutdown() async {
        let (loads, connections) = state.withLock { state in
            state.isShutDown = true
            var loads: [Task<TopicLoad, Never>] = []
            var connections = state.retired
            for slot in state.topics.values {
                switch slot.phase {
                case .loading(let load): loads.append(load)
                case .ready(let connection): connections.append(connection)
                case .unavailable: break
                }
            }
            state.topics = [:]
            state.retired = []
            return (loads, connections)
        }
        // A load that finishes after `isShutDown` closes its own connection.
        for load in loads {
            _ = await load.value
        }
        await withTaskGroup(of: Void.self) { group in
            for connection in connections {
                group.addTask { await connection.close() }
            }
        }
    }

    // MARK: Requests

    private func makeRequest(_ push: APNsPush, token: String, apnsID: String) -> HTTPClientRequest {
        var request = HTTPClientRequest(url: configuration.baseURL + "/3/device/" + token)
        request.method = .POST
        request.headers.add(name: "apns-push-type", value: "mdm")
        request.headers.add(name: "apns-topic", value: push.topic)
        // Ours rather than APNs's, so that every attempt of one push carries the same ID.
        request.headers.add(name: "apns-id", value: apnsID)
        if let expiration = push.expiration {
            request.headers.add(name: "apns-expiration", value: String(max(0, Int(expiration.timeIntervalSince1970))))
        }
        var body = #"{"mdm":"#
        JSONText.appendString(push.pushMagic, to: &body)
        request.body = .bytes(ByteBuffer(string: body + "}"))
        return request
    }

    /// Lowercase hex, or `nil` when the token is not hex (it would change the request path).
    static func normalizedToken(_ token: String) -> String? {
        guard !token.isEmpty, token.utf8.allSatisfy({ $0.isHexDigit }) else { return nil }
        return token.lowercased()
    }

    /// Exponential backoff with equal jitter: between half and all of `base · 2^(attempt−1)`, capped.
    private func backoff(afterAttempt attempt: Int) -> Duration {
        let doubled = configuration.retryBaseDelay * (1 << min(attempt - 1, 20))
        let cap = min(doubled, configuration.retryMaxDelay)
        return cap / 2 + cap / 2 * Double.random(in: 0...1)
    }

    /// Whether a failed request may be sent again on a new connection: not when it timed out or was cancelled.
    /// Failures to connect surface only when the attempt's time is up (the pool retries connecting until then),
    /// so the caller also refuses a resend after a failure that used the whole timeout.
    static func isResendable(_ error: any Error) -> Bool {
        if error is CancellationError { return false }
        if let error = error as? HTTPClientError {
            return ![
                .deadlineExceeded, .connectTimeout, .tlsHandshakeTimeout, .cancelled, .alreadyShutdown,
                .getConnectionFromPoolTimeout,
            ].contains(error)
        }
        return true
    }

    private static func describe(_ error: any Error) -> String {
        String(describing: error)
    }

    // MARK: Certificates per topic

    private struct State {
        var topics: [String: TopicSlot] = [:]
        /// Replaced pools still answering their in-flight requests; kept so that `shutdown` can close them.
        var retired: [APNsTopicConnection] = []
        var nextLoadID = 0
        var isShutDown = false
    }

    private struct TopicSlot {
        var loadID: Int
        var version: Date
        var phase: Phase

        enum Phase {
            case loading(Task<TopicLoad, Never>)
            case ready(APNsTopicConnection)
            case unavailable(reason: String, until: ContinuousClock.Instant)
        }
    }

    private enum TopicLoad: Sendable {
        case ready
        case unavailable(reason: String)
    }

    private struct LeaseFailure: Error {
        var reason: String
    }

    private enum LeaseStep {
        case use(APNsTopicConnection)
        case wait(Task<TopicLoad, Never>)
        case fail(String)
    }

    /// The topic's current pool, leased for one request, loading the certificate when needed.
    private func lease(for push: APNsPush) async -> Result<APNsTopicConnection, LeaseFailure> {
        while true {
            let step = state.withLock { state -> LeaseStep in
                guard !state.isShutDown else { return .fail("APNs client is shut down") }
                let now = ContinuousClock.now
                if let slot = state.topics[push.topic], push.certificateVersion <= slot.version {
                    switch slot.phase {
                    case .loading(let load):
                        return .wait(load)
                    case .ready(let connection):
                        // Leased under the state lock: a connection is retired only after leaving its slot,
                        // so this cannot fail.
                        if connection.acquire() { return .use(connection) }
                    case .unavailable(let reason, let until):
                        if now < until { return .fail(reason) }
                    }
                }
                return .wait(startLoad(topic: push.topic, version: push.certificateVersion, state: &state))
            }
            switch step {
            case .use(let connection):
                return .success(connection)
            case .fail(let reason):
                return .failure(LeaseFailure(reason: reason))
            case .wait(let load):
                if case .unavailable(let reason) = await load.value {
                    return .failure(LeaseFailure(reason: reason))
                }
            }
        }
    }

    /// Puts a new load in the topic's slot and retires the pool it replaces.
    private func startLoad(topic: String, version: Date, state: inout State) -> Task<TopicLoad, Never> {
        state.nextLoadID += 1
        let loadID = state.nextLoadID
        let previous = state.topics[topic]
        let newestVersion = max(version, previous?.version ?? version)
        let load = Task { await self.load(topic: topic, loadID: loadID) }
        state.topics[topic] = TopicSlot(loadID: loadID, version: newestVersion, phase: .loading(load))
        if case .ready(let connection) = previous?.phase {
            state.retired.removeAll { $0.isClosing }
            state.retired.append(connection)
            connection.retire()
        }
        return load
    }

    private func load(topic: String, loadID: Int) async -> TopicLoad {
        var phase: TopicSlot.Phase
        let retention = ContinuousClock.now + configuration.certificateMissRetention
        do {
            if let record = try await certificates.fetchPushCertificate(topic: topic) {
                // APNs would refuse the handshake, which the pool retries until the request times out; saying
                // so at once is clearer.
                guard record.notAfter > Date() else {
                    throw APNsCertificateError.expired(record.notAfter)
                }
                phase = .ready(try APNsTopicConnection(record: record, configuration: configuration))
                logger.info(
                    "push certificate loaded",
                    metadata: [LogKey.apnsTopic: "\(topic)", "not_after": "\(record.notAfter)"]
                )
            } else {
                phase = .unavailable(reason: "no push certificate for topic \(topic)", until: retention)
            }
        } catch let error as APNsCertificateError {
            phase = .unavailable(reason: "push certificate of topic \(topic) is unusable: \(error)", until: retention)
        } catch {
            let detail = (error as? any HTTPMappableError)?.reason ?? "\(error)"
            phase = .unavailable(reason: "cannot load the push certificate of topic \(topic): \(detail)", until: .now)
        }
        if case .unavailable(let reason, _) = phase {
            logger.error("\(reason)", metadata: [LogKey.apnsTopic: "\(topic)"])
        }

        let published = phase
        let unused = state.withLock { state -> APNsTopicConnection? in
            guard !state.isShutDown, state.topics[topic]?.loadID == loadID else {
                // Shut down, or superseded by a newer version while loading: nobody will lease this pool.
                if case .ready(let connection) = published { return connection }
                return nil
            }
            state.topics[topic]?.phase = published
            return nil
        }
        if let unused {
            await unused.close()
        }
        switch phase {
        case .ready, .loading: return .ready
        case .unavailable(let reason, _): return .unavailable(reason: reason)
        }
    }
}

/// The JSON body of an APNs error answer: `{"reason": "…", "timestamp": <ms since 1970>}`.
struct APNsErrorBody: Decodable {
    var reason: String?
    var timestamp: Date?

    private enum CodingKeys: String, CodingKey {
        case reason
        case timestamp
    }

    init(_ body: ByteBuffer) {
        self = (try? JSONDecoder().decode(Self.self, from: Data(body.readableBytesView))) ?? Self()
    }

    private init() {}

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        reason = try? container.decodeIfPresent(String.self, forKey: .reason)
        timestamp = (try? container.decodeIfPresent(Double.self, forKey: .timestamp)).map {
            Date(timeIntervalSince1970: $0 / 1000)
        }
    }
}

extension LogKey {
    static let apnsTopic = "mdm.push_topic"
    /// The first characters of a device token: enough to correlate, too few to push with.
    static let apnsTokenPrefix = "mdm.push_token_prefix"
}

extension UInt8 {
    fileprivate var isHexDigit: Bool {
        (0x30...0x39).contains(self) || (0x41...0x46).contains(self) || (0x61...0x66).contains(self)
    }
}
