import Foundation
import Logging
import MDMBus
import MDMServerSupport
import ServiceLifecycle
import Synchronization

/// Receives push outcomes for this API replica (one reply key per process) and hands them to
/// the requests waiting for them.
final class PushReplyListener: Service, Sendable {
    let key: String
    private let bus: any PushBus
    private let logger: Logger
    private let waiters = Mutex<[String: Waiter]>([:])

    private struct Waiter {
        var remaining: Set<String>
        var results: [String: PushResult] = [:]
        /// The timeout passed before anyone waited.
        var expired = false
        var continuation: CheckedContinuation<[String: PushResult], Never>?
    }

    init(bus: any PushBus, logger: Logger, key: String = "mdm:push:replies:\(UUID().uuidString)") {
        self.bus = bus
        self.logger = logger
        self.key = key
    }

    /// Starts collecting replies for `requestID`; call before publishing so no reply is missed.
    func expect(requestID: String, enrollmentIDs: [String]) {
        waiters.withLock { $0[requestID] = Waiter(remaining: Set(enrollmentIDs)) }
    }

    /// The outcomes of `requestID` once every expected enrollment has one, or whatever arrived
    /// within `timeout`. Forgets the request either way.
    func results(of requestID: String, timeout: Duration) async -> [String: PushResult] {
        let timer = Task {
            try? await Task.sleep(for: timeout)
            self.finish(requestID)
        }
        defer { timer.cancel() }
        return await withCheckedContinuation { continuation in
            let done: [String: PushResult]? = waiters.withLock { waiters in
                guard var waiter = waiters[requestID] else { return [:] }
                if waiter.remaining.isEmpty || waiter.expired {
                    waiters[requestID] = nil
                    return waiter.results
                }
                waiter.continuation = continuation
                waiters[requestID] = waiter
                return nil
            }
            if let done { continuation.resume(returning: done) }
        }
    }

    /// Stops waiting for `requestID` (it was never published).
    func forget(_ requestID: String) {
        _ = waiters.withLock { $0.removeValue(forKey: requestID) }
    }

    func run() async throws {
        // Cancelled at graceful shutdown: requests still waiting then time out on their own.
        await cancelWhenGracefulShutdown {
            var backoff = Backoff()
            while !Task.isCancelled {
                do {
                    for reply in try await self.bus.receiveReplies(at: self.key, block: .seconds(1)) {
                        self.deliver(reply)
                    }
                    backoff.reset()
                } catch is CancellationError {
                    return
                } catch {
                    self.logger.warning("push replies unavailable", metadata: ["error": "\(error)"])
                    await backoff.wait()
                }
            }
        }
    }

    private func deliver(_ reply: PushReply) {
        let finished: (CheckedContinuation<[String: PushResult], Never>, [String: PushResult])? = waiters.withLock {
            waiters in
            guard var waiter = waiters[reply.requestID] else { return nil }
            for (id, result) in reply.results {
                waiter.results[id] = result
                waiter.remaining.remove(id)
            }
            if waiter.remaining.isEmpty, let continuation = waiter.continuation {
                waiters[reply.requestID] = nil
                return (continuation, waiter.results)
            }
            waiters[reply.requestID] = waiter
            return nil
        }
        if let (continuation, results) = finished { continuation.resume(returning: results) }
    }

    private func finish(_ requestID: String) {
        let finished: (CheckedContinuation<[String: PushResult], Never>, [String: PushResult])? = waiters.withLock {
            waiters in
            guard var waiter = waiters[requestID] else { return nil }
            guard let continuation = waiter.continuation else {
                waiter.expired = true
                waiters[requestID] = waiter
                return nil
            }
            waiters[requestID] = nil
            return (continuation, waiter.results)
        }
        if let (continuation, results) = finished { continuation.resume(returning: results) }
    }
}
