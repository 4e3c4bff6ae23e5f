import Foundation
import Testing

@testable import PushService

/// Push throughput of `APNsClient` against the mock APNs on loopback. A benchmark, not a timed test: it runs
/// only when `MDM_APNS_BENCH_PUSHES` is set and prints its figures.
///
///     MDM_APNS_BENCH_PUSHES=10000 swift test -c release --filter APNsBenchmark
///
/// `MDM_APNS_BENCH_CONCURRENCY` (default 1000) bounds the sends in flight; `MDM_APNS_BENCH_TOPICS`
/// (default 1) spreads them over that many topics, each with its own certificate and connection.
@Suite(.enabled(if: APNsBenchmarkSettings.pushes != nil, "set MDM_APNS_BENCH_PUSHES to run"))
struct APNsBenchmark {
    @Test func pushesPerSecond() async throws {
        let total = try #require(APNsBenchmarkSettings.pushes)
        let concurrency = APNsBenchmarkSettings.concurrency
        try await APNsFixture.with { fixture in
            let topics = (0..<max(1, APNsBenchmarkSettings.topicCount)).map { "com.apple.mgmt.External.bench-\($0)" }
            for topic in topics {
                try await fixture.installCertificate(topic: topic)
            }
            let pushes = (0..<total).map { index in
                APNsClientTests.push(String(format: "%064x", index), topic: topics[index % topics.count])
            }
            // Warm-up: one push per topic opens its connection, so the figure is about streams, not handshakes.
            for topic in topics {
                _ = await fixture.client.send(APNsClientTests.push(topic: topic))
            }

            let start = ContinuousClock.now
            let delivered = await withTaskGroup(of: Bool.self) { group in
                var next = 0
                var delivered = 0
                func addNext() {
                    let push = pushes[next]
                    next += 1
                    group.addTask {
                        if case .delivered = await fixture.client.send(push) { return true }
                        return false
                    }
                }
                while next < min(concurrency, pushes.count) {
                    addNext()
                }
                for await success in group {
                    delivered += success ? 1 : 0
                    if next < pushes.count {
                        addNext()
                    }
                }
                return delivered
            }
            let elapsed = ContinuousClock.now - start
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            print(
                """
                APNs benchmark: \(total) pushes, \(topics.count) topic(s), \(concurrency) in flight: \
                \(delivered) delivered in \(String(format: "%.2f", seconds)) s = \
                \(String(format: "%.0f", Double(delivered) / seconds)) pushes/s; \
                \(fixture.mock.acceptedConnectionCount()) connection(s)
                """
            )
            #expect(delivered == total)
        }
    }
}

enum APNsBenchmarkSettings {
    static let environment = ProcessInfo.processInfo.environment
    static let pushes = environment["MDM_APNS_BENCH_PUSHES"].flatMap(Int.init)
    static let concurrency = environment["MDM_APNS_BENCH_CONCURRENCY"].flatMap(Int.init) ?? 1000
    static let topicCount = environment["MDM_APNS_BENCH_TOPICS"].flatMap(Int.init) ?? 1
}
