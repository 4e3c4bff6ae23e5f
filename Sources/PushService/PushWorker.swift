import Foundation
import Logging
import MDMBus
import MDMServerSupport
import MDMStorage
import ServiceLifecycle

/// How a PushService replica consumes, reclaims and re-drives push requests.
struct PushWorkerSettings: Sendable {
    /// Consumer name prefix; unique per process.
    var consumerName: String
    /// Concurrent consumers (read–push–acknowledge loops) in this process.
    var consumers = 2
    /// Stream entries read at once by one consumer.
    var batchSize = 16
    /// After the first entry arrives, keep reading this long before pushing, so requests for
    /// the same enrollment that arrive together become one APNs request.
    var coalesceWindow: Duration = .milliseconds(20)
    /// Entries another consumer read but did not acknowledge for this long are taken over.
    var reclaimIdle: Duration = .seconds(30)
    var reclaimInterval: Duration = .seconds(5)
    /// How often the outbox is scanned for pushes that never made it through the bus.
    var redriveInterval: Duration = .seconds(5)
    /// How long an owed push may wait (in the bus, or after a failure) before it is re-driven.
    var redriveAfter: Duration = .seconds(60)
    /// After this many failed APNs attempts an owed push is dropped (and logged).
    var redriveMaxAttempts = 20
    /// Enrollments per re-driven stream entry.
    var redriveChunk = 500

    init(consumerName: String) {
        self.consumerName = consumerName
    }

    static func uniqueConsumerName() -> String {
        let host = ProcessInfo.processInfo.hostName
        return "\(host)-\(ProcessInfo.processInfo.processIdentifier)-\(UUID().uuidString.prefix(8))"
    }
}

/// PushService's long-running work: consumer loops over the push stream, a reclaimer for
/// entries whose consumer died, and the outbox re-driver. At graceful shutdown every loop
/// finishes the batch in hand (pushed, recorded, acknowledged) and stops.
struct PushWorker: Service {
    var bus: any PushBus
    var store: any PushStore
    var handler: PushHandler
    var settings: PushWorkerSettings
    var metrics: MDMMetrics = .process
    var logger: Logger

    func run() async throws {
        await prepareBus()
        await withTaskGroup(of: Void.self) { group in
            for index in 0..<max(1, settings.consumers) {
                group.addTask { await consume(as: "\(settings.consumerName)-\(index)") }
            }
            group.addTask { await repeatUntilShutdown(every: settings.reclaimInterval, reclaim) }
            group.addTask { await repeatUntilShutdown(every: settings.redriveInterval, redrive) }
        }
    }

    /// Creates the consumer group, retrying until Redis answers or shutdown begins.
    private func prepareBus() async {
        var backoff = Backoff()
        while !Task.isCancelled, !Task.isShuttingDownGracefully {
            do {
                try await bus.prepare()
                return
            } catch {
                logger.warning("push bus not ready", metadata: ["error": "\(error)"])
                await backoff.wait()
            }
        }
    }

    private func consume(as consumer: String) async {
        var backoff = Backoff()
        while !Task.isCancelled, !Task.isShuttingDownGracefully {
            do {
                var received = try await bus.receive(consumer: consumer, count: settings.batchSize, block: .seconds(1))
                guard !received.isEmpty else { continue }
                let deadline = ContinuousClock.now + settings.coalesceWindow
                while received.count < settings.batchSize {
                    let left = deadline - ContinuousClock.now
                    guard left > .zero else { break }
                    received += try await bus.receive(
                        consumer: consumer, count: settings.batchSize - received.count, block: left)
                }
                try await process(received, as: consumer)
                backoff.reset()
            } catch {
                logger.error("push consumer failed", metadata: ["consumer": "\(consumer)", "error": "\(error)"])
                // A Redis that restarted empty has lost the group: create it again.
                try? await bus.prepare()
                await backoff.wait()
            }
        }
    }

    /// Pushes, records, answers waiting callers, then acknowledges. When recording fails the
    /// entries stay pending and are reclaimed later: a push may repeat, none is lost.
    ///
    /// While a batch is in hand its entries are kept alive, so a slow batch (APNs retrying, a
    /// loaded machine) is not mistaken for a dead consumer's and pushed twice.
    private func process(_ received: [ReceivedPushRequest], as consumer: String) async throws {
        let receipts = received.map(\.receipt)
        let handled = try await withThrowingTaskGroup(of: PushHandler.Handled?.self) { group in
            group.addTask { try await handler.handle(received.map(\.request)) }
            group.addTask {
                while !Task.isCancelled {
                    do {
                        try await Task.sleep(for: settings.reclaimIdle / 3)
                    } catch {
                        return nil
                    }
                    do {
                        try await bus.keepAlive(receipts, consumer: consumer)
                    } catch {
                        logger.warning("could not keep push requests alive", metadata: ["error": "\(error)"])
                    }
                }
                return nil
            }
            defer { group.cancelAll() }
            while let result = try await group.next() {
                if let handled = result { return handled }
            }
            throw CancellationError()
        }
        for (key, reply) in handled.replies {
            do {
                try await bus.reply(reply, to: key)
            } catch {
                logger.warning("push reply not sent", metadata: ["key": "\(key)", "error": "\(error)"])
            }
        }
        try await bus.acknowledge(received.map(\.receipt))
        logger.debug(
            "push batch handled",
            metadata: ["requests": "\(received.count)", "pushes": "\(handled.pushesSent)"]
        )
    }

    private func reclaim() async throws {
        let backlog = try await bus.backlog()
        metrics.recordPushStream(pending: backlog.pending, lag: backlog.lag)
        while !Task.isShuttingDownGracefully {
            let reclaimed = try await bus.reclaim(
                consumer: "\(settings.consumerName)-reclaim",
                minIdle: settings.reclaimIdle,
                count: settings.batchSize
            )
            guard !reclaimed.isEmpty else { return }
            logger.info("reclaimed push requests of a stalled consumer", metadata: ["count": "\(reclaimed.count)"])
            try await process(reclaimed, as: "\(settings.consumerName)-reclaim")
        }
    }

    private func redrive() async throws {
        let (due, abandoned) = try await store.claimDuePushes(
            limit: 5000,
            redriveAfter: settings.redriveAfter,
            maxAttempts: settings.redriveMaxAttempts
        )
        if abandoned > 0 {
            logger.error("dropped owed pushes after repeated APNs failures", metadata: ["count": "\(abandoned)"])
        }
        guard !due.isEmpty else { return }
        var requests: [PushRequest] = []
        for owed in due {
            for start in stride(from: 0, to: owed.enrollmentIDs.count, by: settings.redriveChunk) {
                let chunk = owed.enrollmentIDs[start..<min(start + settings.redriveChunk, owed.enrollmentIDs.count)]
                requests.append(PushRequest(requestID: owed.requestID, enrollmentIDs: Array(chunk)))
            }
        }
        do {
            try await bus.publish(requests)
            logger.info(
                "re-drove owed pushes", metadata: ["enrollments": "\(due.reduce(0) { $0 + $1.enrollmentIDs.count })"])
        } catch {
            // Still owed: due again at the next scan rather than after `redriveAfter`.
            try await store.redriveNow(requestIDs: due.map(\.requestID))
            throw error
        }
    }

    private func repeatUntilShutdown(every interval: Duration, _ body: @escaping @Sendable () async throws -> Void)
        async
    {
        try? await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                do {
                    try await body()
                } catch is CancellationError {
                    return
                } catch {
                    logger.warning("push maintenance failed", metadata: ["error": "\(error)"])
                }
                try await Task.sleep(for: interval)
            }
        }
    }
}
