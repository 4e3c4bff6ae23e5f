import Foundation
import Synchronization

/// What a test server received, in arrival order, and tasks waiting until it holds at least
/// N items. Appending and registering a waiter share one lock, so no arrival slips between a
/// waiter's check and its registration.
package final class AwaitableLog<Item: Sendable>: Sendable {
    private struct Waiter {
        let count: Int
        let continuation: CheckedContinuation<[Item], any Error>
        var timeoutTask: Task<Void, any Error>?
    }

    private struct State {
        var items: [Item] = []
        var waiters: [UUID: Waiter] = [:]
    }

    private let state = Mutex(State())
    private let timedOut: @Sendable (_ expected: Int, _ received: Int) -> any Error

    /// - Parameter timedOut: The error a waiter gets when its timeout passes first.
    package init(timedOut: @escaping @Sendable (_ expected: Int, _ received: Int) -> any Error) {
        self.timedOut = timedOut
    }

    /// Everything so far, in arrival order.
    package var items: [Item] { state.withLock { $0.items } }

    /// Adds `item` and wakes the waiters it satisfies.
    package func append(_ item: Item) {
        let satisfied = state.withLock { state in
            state.items.append(item)
            var satisfied: [(Waiter, [Item])] = []
            for (id, waiter) in state.waiters where waiter.count <= state.items.count {
                state.waiters[id] = nil
                satisfied.append((waiter, state.items))
            }
            return satisfied
        }
        for (waiter, items) in satisfied {
            waiter.timeoutTask?.cancel()
            waiter.continuation.resume(returning: items)
        }
    }

    /// Waits until at least `count` items have arrived and returns all of them; throws the
    /// `timedOut` error after `timeout`, or `CancellationError` when the task is cancelled.
    package func wait(count: Int, timeout: Duration) async throws -> [Item] {
        let id = UUID()
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                let ready: [Item]? = state.withLock { state in
                    if state.items.count >= count { return state.items }
                    state.waiters[id] = Waiter(count: count, continuation: continuation)
                    return nil
                }
                if let ready {
                    continuation.resume(returning: ready)
                    return
                }
                let timeoutTask = Task { [weak self] in
                    try await Task.sleep(for: timeout)
                    self?.expire(id, error: nil)
                }
                state.withLock { $0.waiters[id]?.timeoutTask = timeoutTask }
            }
        } onCancel: {
            self.expire(id, error: CancellationError())
        }
    }

    private func expire(_ id: UUID, error: (any Error)?) {
        let expired = state.withLock { state in
            state.waiters.removeValue(forKey: id).map { ($0, state.items.count) }
        }
        guard let (waiter, received) = expired else { return }
        waiter.timeoutTask?.cancel()
        waiter.continuation.resume(throwing: error ?? timedOut(waiter.count, received))
    }
}
