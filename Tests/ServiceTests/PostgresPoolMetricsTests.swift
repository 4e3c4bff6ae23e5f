import Logging
import MDMServerSupport
import MDMTestSupport
import PostgresNIO
import Testing

/// `PostgresPoolObserver` reads postgres-nio's pool events off its background logger; these
/// tests fail if a postgres-nio upgrade stops emitting them the way it counts on.
@Suite("PostgreSQL pool metrics", .enabled(if: TestDatabase.isEnabled))
struct PostgresPoolMetricsTests {
    static func pool(_ metrics: MDMMetrics) throws -> (open: Double, failures: Double) {
        let text = try PrometheusText(String(decoding: metrics.exposition(), as: UTF8.self))
        return (text.sum(MDMMetrics.Name.postgresPoolConnections), text.sum(MDMMetrics.Name.postgresConnectFailures))
    }

    static func client(url: String, poolSize: Int, metrics: MDMMetrics, logger: Logger) throws -> PostgresClient {
        try Database.makeClient(
            configuration: ServerConfiguration(
                host: "127.0.0.1", port: 0, databaseURL: url, databasePoolSize: poolSize),
            logger: logger,
            metrics: metrics
        )
    }

    @Test func openConnectionsGrowWithDemandAndDropAtShutdown() async throws {
        let database = try await TestDatabase.create(logger: TestDatabase.quietLogger)
        let metrics = MDMMetrics()
        let client = try Self.client(url: database.url, poolSize: 3, metrics: metrics, logger: TestDatabase.quietLogger)
        let run = Task { await client.run() }
        #expect(try Self.pool(metrics).open == 0)
        // Two connections held at once: the pool has opened two.
        let (first, second) = (AsyncStream<Void>.makeStream(), AsyncStream<Void>.makeStream())
        async let held: Void = client.withConnection { _ in
            first.continuation.finish()
            for await _ in second.stream {}
        }
        for await _ in first.stream {}
        try await client.withConnection { _ in
            let open = try Self.pool(metrics).open
            #expect(open >= 2 && open <= 3, "\(open) open")
        }
        second.continuation.finish()
        try await held
        #expect(try Self.pool(metrics).open >= 2, "returned connections stay open")
        #expect(try Self.pool(metrics).failures == 0)
        run.cancel()
        await run.value
        try await waitUntil("every connection closed") { try Self.pool(metrics).open == 0 }
        try await database.drop()
    }

    @Test func failedConnectionAttemptsAreCounted() async throws {
        let port = try await freeLoopbackPort()
        let metrics = MDMMetrics()
        let client = try Self.client(
            url: "postgres://nobody@127.0.0.1:\(port)/none?sslmode=disable", poolSize: 1, metrics: metrics,
            logger: TestDatabase.quietLogger)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await client.run() }
            defer { group.cancelAll() }
            let query = Task { try await client.query("SELECT 1") }
            try await waitUntil("a refused connection attempt") { try Self.pool(metrics).failures >= 1 }
            query.cancel()
            _ = try? await query.value
            #expect(try Self.pool(metrics).open == 0)
        }
    }
}
