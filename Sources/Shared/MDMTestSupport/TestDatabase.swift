import Foundation
import Logging
import MDMStorage
import PostgresNIO
import Synchronization

/// A fresh, fully migrated PostgreSQL database for one test.
///
/// The server comes from `MDM_TEST_DATABASE_URL` (a superuser URL such as
/// `postgres://postgres@127.0.0.1:PORT/postgres`; `deploy/local/test` starts a throwaway server
/// and sets it). Each test process migrates one template database once and clones it per test
/// with `CREATE DATABASE … TEMPLATE`, so tests are isolated and run in parallel.
package struct TestDatabase: Sendable {
    package static let environmentKey = "MDM_TEST_DATABASE_URL"

    /// Whether database tests should run: the server is configured, or this is CI, where a
    /// missing server must fail the run rather than skip it.
    package static var isEnabled: Bool {
        let environment = ProcessInfo.processInfo.environment
        return environment[environmentKey] != nil || environment["CI"] == "true"
    }

    package var name: String
    /// The postgres URL of the new database.
    package var url: String
    package var configuration: PostgresClient.Configuration
    private var server: DatabaseURL
    private var logger: Logger

    /// Creates a fresh, fully migrated database on the server named by `MDM_TEST_DATABASE_URL`.
    /// With `migrated: false` the database is empty (for migration tests).
    package static func create(
        migrated: Bool = true,
        logger: Logger = TestDatabase.quietLogger
    ) async throws -> TestDatabase {
        let server = try serverURL()
        let template = migrated ? try await TemplateDatabase.shared.name(server: server, logger: logger) : "template0"
        let name = uniqueName(prefix: "mdm_test")
        try await execute("CREATE DATABASE \(name) TEMPLATE \(template)", server: server, logger: logger)
        let url = server.with(database: name)
        return TestDatabase(
            name: name,
            url: url.urlString,
            configuration: url.configuration(maximumConnections: 8),
            server: server,
            logger: logger
        )
    }

    /// Creates a database, runs `body` with a running client for it, and drops it.
    package static func withFreshClient<T: Sendable>(
        migrated: Bool = true,
        logger: Logger = TestDatabase.quietLogger,
        _ body: @Sendable (PostgresClient) async throws -> T
    ) async throws -> T {
        let database = try await create(migrated: migrated, logger: logger)
        let result: T
        do {
            result = try await database.withClient(body)
        } catch {
            try? await database.drop()
            throw error
        }
        try await database.drop()
        return result
    }

    /// Runs `body` with a running `PostgresClient` for this database; the client stops after.
    package func withClient<T: Sendable>(_ body: @Sendable (PostgresClient) async throws -> T) async throws -> T {
        try await Self.withClient(configuration: configuration, logger: logger, body)
    }

    package func drop() async throws {
        try await Self.execute("DROP DATABASE IF EXISTS \(name) WITH (FORCE)", server: server, logger: logger)
    }

    /// Warnings and errors only: postgres-nio and the migrator are chatty at lower levels.
    package static var quietLogger: Logger {
        var logger = Logger(label: "mdm.test-database")
        logger.logLevel = .warning
        return logger
    }

    static func withClient<T: Sendable>(
        configuration: PostgresClient.Configuration,
        logger: Logger,
        _ body: @Sendable (PostgresClient) async throws -> T
    ) async throws -> T {
        // The body may lease before the run task has started; postgres-nio then warns although
        // the lease simply waits for the pool to run.
        var backgroundLogger = logger
        backgroundLogger.logLevel = max(logger.logLevel, .error)
        let client = PostgresClient(configuration: configuration, backgroundLogger: backgroundLogger)
        let runner = Task { await client.run() }
        let result: T
        do {
            result = try await body(client)
        } catch {
            await stop(runner)
            throw error
        }
        await stop(runner)
        return result
    }

    /// Cancels a pool's run task and waits for it to end, but at most `limit`: a pool that
    /// misses its cancellation (seen on a loaded machine) must not hang every test after it.
    /// Unstructured on purpose, so the wait can be abandoned.
    static func stop(_ runner: Task<Void, Never>, limit: Duration = .seconds(10)) async {
        runner.cancel()
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let pending = Mutex<CheckedContinuation<Void, Never>?>(continuation)
            let resume: @Sendable () -> Void = { pending.withLock { $0.take() }?.resume() }
            Task {
                await runner.value
                resume()
            }
            Task {
                try? await Task.sleep(for: limit)
                resume()
            }
        }
    }

    /// Runs one administrative statement against the server's own database. Only generated
    /// identifiers are interpolated.
    static func execute(_ sql: String, server: DatabaseURL, logger: Logger) async throws {
        try await withClient(configuration: server.configuration(maximumConnections: 1), logger: logger) { client in
            _ = try await client.query(PostgresQuery(unsafeSQL: sql), logger: logger)
        }
    }

    private static func serverURL() throws -> DatabaseURL {
        guard let value = ProcessInfo.processInfo.environment[environmentKey], !value.isEmpty else {
            throw TestDatabaseError.notConfigured
        }
        do {
            return try DatabaseURL(value)
        } catch {
            throw TestDatabaseError.invalidURL(error)
        }
    }

    /// Lowercase letters, digits and underscores only, so it needs no quoting.
    static func uniqueName(prefix: String) -> String {
        let suffix = String(UInt64.random(in: 0...UInt64.max), radix: 36)
        return "\(prefix)_\(ProcessInfo.processInfo.processIdentifier)_\(suffix)"
    }
}

package enum TestDatabaseError: Error, CustomStringConvertible {
    case notConfigured
    case invalidURL(DatabaseURLError)

    package var description: String {
        switch self {
        case .notConfigured:
            "\(TestDatabase.environmentKey) is not set: database tests need a PostgreSQL superuser URL such as "
                + "postgres://postgres@127.0.0.1:PORT/postgres. Run them with deploy/local/test, which starts a "
                + "throwaway server and sets it."
        case .invalidURL(let error):
            "\(TestDatabase.environmentKey): \(error)"
        }
    }
}

/// The per-process template: created and migrated once, then cloned for every test. Named per
/// process so concurrent test processes (and schema edits between runs) never share one.
private actor TemplateDatabase {
    static let shared = TemplateDatabase()

    private var creation: Task<String, any Error>?

    func name(server: DatabaseURL, logger: Logger) async throws -> String {
        if let creation {
            return try await creation.value
        }
        let creation = Task { try await Self.create(server: server, logger: logger) }
        self.creation = creation
        return try await creation.value
    }

    private static func create(server: DatabaseURL, logger: Logger) async throws -> String {
        let now = Int(Date().timeIntervalSince1970)
        await dropStaleTemplates(olderThan: now - 86_400, server: server, logger: logger)
        let name = TestDatabase.uniqueName(prefix: "mdm_template_\(now)")
        try await TestDatabase.execute("CREATE DATABASE \(name)", server: server, logger: logger)
        let configuration = server.with(database: name).configuration(maximumConnections: 1)
        // The client is stopped before returning: a template with open sessions cannot be cloned.
        try await TestDatabase.withClient(configuration: configuration, logger: logger) { client in
            _ = try await SchemaMigrator(client: client, logger: logger).migrate()
        }
        return name
    }

    /// Templates outlive their test process. Those left by runs more than a day old are dropped
    /// (best effort) so a long-lived development server does not fill up.
    private static func dropStaleTemplates(olderThan cutoff: Int, server: DatabaseURL, logger: Logger) async {
        let stale = try? await TestDatabase.withClient(
            configuration: server.configuration(maximumConnections: 1),
            logger: logger
        ) { client in
            var names: [String] = []
            let rows = try await client.query(
                "SELECT datname FROM pg_database WHERE datname ~ '^mdm_template_[0-9]+_[0-9]+_[0-9a-z]+$'",
                logger: logger
            )
            for try await name in rows.decode(String.self) {
                let created = name.split(separator: "_").dropFirst(2).first.flatMap { Int($0) }
                if let created, created < cutoff {
                    names.append(name)
                }
            }
            return names
        }
        for name in stale ?? [] {
            try? await TestDatabase.execute("DROP DATABASE IF EXISTS \(name)", server: server, logger: logger)
        }
    }
}
