import AsyncHTTPClient
import Foundation
import Logging
import MDMServerSupport
import MDMStorage
import NIOCore
import NIOPosix
import PostgresNIO
import ServiceLifecycle
import Synchronization

/// Numbers for metrics: counters since this worker started, and the outbox as it is now.
package struct WebhookStatistics: Sendable, Equatable {
    /// Events this worker delivered.
    package var delivered: Int
    /// Attempts of this worker that failed (each is retried or dead-lettered).
    package var failedAttempts: Int
    /// Events this worker gave up on.
    package var deadLettered: Int
    /// Events waiting for delivery, all workers.
    package var pending: Int
    /// Dead letters kept for operators, all workers.
    package var dead: Int
    /// Age of the oldest pending event; zero when none is pending.
    package var oldestPendingAge: Duration
}

/// Delivers recorded webhook events (a swift-service-lifecycle `Service`; PushService runs it).
///
/// Each round claims the head event of up to `concurrency − in flight` enrollments and POSTs
/// them in parallel; an enrollment's next event is claimed only after its head is delivered or
/// dead, so events arrive in order per enrollment and never two at once, whatever the number
/// of replicas. Nothing is held in memory beyond the events in flight. On graceful shutdown the
/// worker stops claiming and lets the deliveries in flight finish; if it dies instead, their
/// leases expire and another worker (or its successor) delivers them.
package struct WebhookWorker: Service, CustomStringConvertible {
    private let configuration: WebhookConfiguration
    private let store: any WebhookEventStore
    private let logger: Logger
    private let counters = Counters()

    package init(configuration: WebhookConfiguration, store: any WebhookEventStore, logger: Logger) {
        self.configuration = configuration
        self.store = store
        self.logger = logger
    }

    /// The worker over a role's PostgreSQL pool.
    package init(configuration: WebhookConfiguration, database: PostgresClient, logger: Logger) {
        self.init(
            configuration: configuration,
            store: PostgresWebhookEventStore(client: database, logger: logger),
            logger: logger
        )
    }

    /// ServiceLifecycle logs services by their description: name the receiver's host only,
    /// never the URL (it may hold credentials) or the HMAC key.
    package var description: String {
        "WebhookWorker(\(configuration.url.host ?? ""), concurrency \(configuration.concurrency))"
    }

    package func statistics() async throws -> WebhookStatistics {
        let counts = try await store.counts()
        let age = counts.oldestPendingSince.map { max(0, Date().timeIntervalSince($0)) } ?? 0
        return WebhookStatistics(
            delivered: counters.delivered.load(ordering: .relaxed),
            failedAttempts: counters.failedAttempts.load(ordering: .relaxed),
            deadLettered: counters.deadLettered.load(ordering: .relaxed),
            pending: counts.pending,
            dead: counts.dead,
            oldestPendingAge: .milliseconds(Int64(age * 1000))
        )
    }

    package func run() async throws {
        var httpConfiguration = HTTPClient.Configuration()
        httpConfiguration.redirectConfiguration = .disallow
        httpConfiguration.timeout = .init(connect: .init(configuration.timeout), read: .init(configuration.timeout))
        httpConfiguration.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = configuration.concurrency
        // A refused connection fails the attempt at once; the outbox retries with backoff, and a
        // receiver that is down must not hold a delivery slot for the whole timeout.
        httpConfiguration.connectionPool.retryConnectionEstablishment = false
        let httpClient = HTTPClient(
            eventLoopGroup: MultiThreadedEventLoopGroup.singleton, configuration: httpConfiguration)
        let client = WebhookClient(
            url: configuration.url,
            hmacKey: configuration.hmacKey,
            timeout: configuration.timeout,
            httpClient: httpClient
        )
        logger.info(
            "webhook delivery started",
            metadata: [
                LogKey.webhookHost: "\(configuration.url.host ?? "")", "concurrency": "\(configuration.concurrency)",
            ]
        )
        let stopping = StopFlag()
        var failure: (any Error)?
        do {
            try await withGracefulShutdownHandler {
                try await deliver(with: client, until: stopping)
            } onGracefulShutdown: {
                stopping.stop()
            }
        } catch {
            failure = error
        }
        try? await httpClient.shutdown()
        logger.info("webhook delivery stopped")
        if let failure, !Task.isCancelled { throw failure }
    }

    private enum Finished: Sendable {
        case delivery
        case tick
    }

    private func deliver(with client: WebhookClient, until stopping: StopFlag) async throws {
        try await withThrowingTaskGroup(of: Finished.self) { group in
            var inFlight = 0
            var ticking = false
            var nextMaintenance = ContinuousClock.now
            var storeFailures = 0
            while !stopping.isStopped, !Task.isCancelled {
                if ContinuousClock.now >= nextMaintenance {
                    await maintain()
                    nextMaintenance = ContinuousClock.now + configuration.maintenanceInterval
                }
                var pause = configuration.pollInterval
                if inFlight < configuration.concurrency {
                    do {
                        let limit = configuration.concurrency - inFlight
                        let claim = try await abandoningOnCancel { [store, configuration] in
                            try await store.claim(
                                limit: limit, lease: configuration.lease, expiry: configuration.expiry)
                        }
                        storeFailures = 0
                        if claim.expired > 0 {
                            counters.deadLettered.add(claim.expired, ordering: .relaxed)
                            logger.warning(
                                "webhook events expired undelivered", metadata: ["count": "\(claim.expired)"])
                        }
                        for delivery in claim.deliveries {
                            inFlight += 1
                            group.addTask {
                                await self.attempt(delivery, client: client)
                                return .delivery
                            }
                        }
                    } catch  where !Task.isCancelled {
                        // PostgreSQL away: back off (up to a minute) instead of spinning.
                        storeFailures += 1
                        pause = min(configuration.pollInterval * (1 << min(storeFailures, 6)), .seconds(60))
                        logger.error("webhook claim failed", metadata: ["error": "\(String(reflecting: error))"])
                    }
                }
                if !ticking {
                    ticking = true
                    group.addTask { [pause] in
                        // Ends early on graceful shutdown, so stopping does not wait a whole poll.
                        try? await cancelWhenGracefulShutdown { try await Task.sleep(for: pause) }
                        return .tick
                    }
                }
                // A finished delivery may free its enrollment's next event: claim again at once.
                switch try await group.next() {
                case .delivery: inFlight -= 1
                case .tick: ticking = false
                case nil: break
                }
            }
            // Let the deliveries in flight finish (each bounded by the timeout), so a graceful
            // stop leaves no lease to expire.
            while try await group.next() != nil {}
        }
    }

    /// One attempt at the head event of one enrollment, and its outcome recorded.
    private func attempt(_ delivery: WebhookDelivery, client: WebhookClient) async {
        let outcome = await client.post(delivery.body)
        // Cancelled means the process is going away: the lease hands the event to the next worker.
        guard !Task.isCancelled else { return }
        let metadata: Logger.Metadata = [
            LogKey.enrollmentID: "\(delivery.enrollmentID)",
            LogKey.webhookEventID: "\(delivery.eventID.uuidString.lowercased())",
            LogKey.webhookTopic: "\(delivery.topic)",
            "attempts": "\(delivery.attempts)",
        ]
        do {
            switch outcome {
            case .delivered:
                try await abandoningOnCancel { [store] in try await store.markDelivered(delivery) }
                counters.delivered.add(1, ordering: .relaxed)
            case .failed(let reason):
                counters.failedAttempts.add(1, ordering: .relaxed)
                let retryAfter = configuration.retryDelay(afterAttempts: delivery.attempts)
                let dead = try await abandoningOnCancel { [store, configuration] in
                    try await store.markFailed(
                        delivery, error: reason, retryAfter: retryAfter, expiry: configuration.expiry)
                }
                if dead {
                    counters.deadLettered.add(1, ordering: .relaxed)
                    logger.warning("webhook event dead-lettered: \(reason)", metadata: metadata)
                } else {
                    logger.debug("webhook delivery failed: \(reason)", metadata: metadata)
                }
            }
        } catch {
            // The lease expires and the event is attempted again: late, but not lost.
            logger.error(
                "webhook outcome not recorded",
                metadata: metadata.merging(["error": "\(String(reflecting: error))"]) { $1 }
            )
        }
    }

    /// Retention, and one summary line so operators see a receiver in trouble.
    private func maintain() async {
        do {
            let deleted = try await abandoningOnCancel { [store, configuration] in
                try await store.deleteExpired(
                    deliveredRetention: configuration.retention,
                    deadRetention: configuration.deadRetention
                )
            }
            let statistics = try await abandoningOnCancel { try await self.statistics() }
            let metadata: Logger.Metadata = [
                "delivered": "\(statistics.delivered)",
                "failed_attempts": "\(statistics.failedAttempts)",
                "dead_lettered": "\(statistics.deadLettered)",
                "pending": "\(statistics.pending)",
                "dead": "\(statistics.dead)",
                "oldest_pending_seconds": "\(statistics.oldestPendingAge.components.seconds)",
                "deleted": "\(deleted)",
            ]
            if statistics.pending > 0 && statistics.oldestPendingAge > configuration.lease {
                logger.warning("webhook events are waiting", metadata: metadata)
            } else {
                logger.info("webhook outbox", metadata: metadata)
            }
        } catch  where !Task.isCancelled {
            logger.error("webhook maintenance failed", metadata: ["error": "\(String(reflecting: error))"])
        } catch {}
    }
}

/// Runs a store call in its own task and waits for it, but stops waiting when the worker is
/// cancelled. A cancelled ServiceGroup cancels the worker and its PostgreSQL pool at once, and
/// postgres-nio (1.33) never answers a query written to a connection the pool has just closed
/// (a transaction's ROLLBACK, for one): waiting for it would keep the process from exiting. The
/// abandoned call ends with the process; its lease, if any, expires as after a crash.
private func abandoningOnCancel<T: Sendable>(_ operation: @escaping @Sendable () async throws -> T) async throws -> T {
    let waiter = StoreCallWaiter<T>()
    return try await withTaskCancellationHandler {
        try await withCheckedThrowingContinuation { continuation in
            guard waiter.wait(continuation) else { return }
            Task {
                do {
                    waiter.finish(with: .success(try await operation()))
                } catch {
                    waiter.finish(with: .failure(error))
                }
            }
        }
    } onCancel: {
        waiter.finish(with: .failure(CancellationError()))
    }
}

/// Hands a store call's result (or the worker's cancellation, whichever comes first) to the
/// one waiting continuation.
private final class StoreCallWaiter<T: Sendable>: Sendable {
    private enum State {
        case idle
        case waiting(CheckedContinuation<T, any Error>)
        case finished(Result<T, any Error>)
        case resumed
    }

    private let state = Mutex<State>(.idle)

    /// Stores the continuation; `false` (and the continuation resumed) when a result came first.
    func wait(_ continuation: CheckedContinuation<T, any Error>) -> Bool {
        let early: Result<T, any Error>? = state.withLock { state in
            guard case .finished(let result) = state else {
                state = .waiting(continuation)
                return nil
            }
            state = .resumed
            return result
        }
        guard let early else { return true }
        continuation.resume(with: early)
        return false
    }

    func finish(with result: Result<T, any Error>) {
        let continuation: CheckedContinuation<T, any Error>? = state.withLock { state in
            switch state {
            case .idle:
                state = .finished(result)
                return nil
            case .waiting(let continuation):
                state = .resumed
                return continuation
            case .finished, .resumed:
                return nil
            }
        }
        continuation?.resume(with: result)
    }
}

/// Set once when graceful shutdown begins.
private final class StopFlag: Sendable {
    private let stopped = Atomic<Bool>(false)

    var isStopped: Bool { stopped.load(ordering: .relaxed) }

    func stop() {
        stopped.store(true, ordering: .relaxed)
    }
}

/// This worker's counters, shared between its run and `statistics()`.
private final class Counters: Sendable {
    let delivered = Atomic<Int>(0)
    let failedAttempts = Atomic<Int>(0)
    let deadLettered = Atomic<Int>(0)
}
