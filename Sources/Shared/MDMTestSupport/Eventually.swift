/// A condition a test waited for that did not come true in time.
package struct ConditionTimedOut: Error, CustomStringConvertible {
    package let what: String
    package var description: String { "timed out waiting: \(what)" }
}

/// Waits until `condition` holds, checking every 20 ms; throws `ConditionTimedOut` after
/// `timeout`. For state with no event to wait on (a counter in another process, a row another
/// task writes); where an event exists, wait on it instead.
package func waitUntil(
    timeout: Duration = .seconds(30),
    _ what: String,
    _ condition: () async throws -> Bool
) async throws {
    let deadline = ContinuousClock.now + timeout
    while try await !condition() {
        guard ContinuousClock.now < deadline else { throw ConditionTimedOut(what: what) }
        try await Task.sleep(for: .milliseconds(20))
    }
}
