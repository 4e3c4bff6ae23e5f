/// Exponential backoff for retry loops: 100 ms doubling to 5 s, with jitter so replicas that
/// failed together do not retry together.
package struct Backoff: Sendable {
    private var attempt = 0

    package init() {}

    package mutating func reset() {
        attempt = 0
    }

    package mutating func wait() async {
        let base = min(5_000, 100 << min(attempt, 6))
        attempt += 1
        try? await Task.sleep(for: .milliseconds(Int.random(in: base / 2...base)))
    }
}
