import Foundation
import MDMBus
import MDMServerSupport
import MDMTestSupport
import PostgresNIO

@testable import PushService

extension PushConfiguration {
    /// PushService tuned for tests: short idle and re-drive times so recovery paths run in
    /// seconds; APNs at `apnsURL` trusting `apnsTrustRootsPEM`.
    static func forTests(
        server: ServerConfiguration,
        redis: RedisConfiguration,
        stream: String? = nil,
        consumerName: String = "test-\(UUID().uuidString.prefix(8))"
    ) throws -> PushConfiguration {
        var worker = PushWorkerSettings(consumerName: consumerName)
        worker.reclaimIdle = .seconds(2)
        worker.reclaimInterval = .milliseconds(500)
        worker.redriveInterval = .milliseconds(500)
        worker.redriveAfter = .seconds(2)
        var configuration = PushConfiguration(server: server, redis: redis, apns: APNsConfiguration(), worker: worker)
        if let stream { configuration.stream = stream }
        return configuration
    }
}

extension TestDatabase {
    /// The integer the query returns (a `count(*)`).
    func count(_ sql: String) async throws -> Int {
        try await withClient { client in
            for try await value in try await client.query(PostgresQuery(unsafeSQL: sql)).decode(Int.self) {
                return value
            }
            return 0
        }
    }
}
