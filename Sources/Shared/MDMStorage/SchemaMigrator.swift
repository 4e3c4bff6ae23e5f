import Logging
import PostgresNIO

/// Applies the numbered migrations in `Migration.all` and reports the schema version.
///
/// Several processes may migrate at once (a migrate job racing a replica's start): a session
/// advisory lock serialises them, and each migration commits in its own transaction.
package struct SchemaMigrator: Sendable {
    /// The schema version this build needs.
    package static let latestVersion = Migration.all.last?.version ?? 0

    /// Key of the session advisory lock held while migrating ("MDM_MIGR").
    private static let lockKey: Int64 = 0x4D44_4D5F_4D49_4752

    private let client: PostgresClient
    private let logger: Logger

    package init(client: PostgresClient, logger: Logger) {
        self.client = client
        self.logger = logger
    }

    /// Applies every migration the database lacks, in version order. Returns the versions
    /// applied by this call (empty when the schema was already current).
    @discardableResult
    package func migrate() async throws -> [Int] {
        let logger = self.logger
        return try await client.withConnection { connection in
            try await connection.query("SELECT pg_advisory_lock(\(Self.lockKey))", logger: logger)
            do {
                let applied = try await Self.applyMissing(on: connection, logger: logger)
                try await connection.query("SELECT pg_advisory_unlock(\(Self.lockKey))", logger: logger)
                return applied
            } catch {
                // The lock is per session and the connection goes back to the pool.
                _ = try? await connection.query("SELECT pg_advisory_unlock(\(Self.lockKey))", logger: logger)
                throw error
            }
        }
    }

    /// The highest applied migration version; 0 for a database that was never migrated.
    package func currentVersion() async throws -> Int {
        let table = try await client.query("SELECT to_regclass('schema_migrations') IS NOT NULL", logger: logger)
        guard try await table.first(decoding: Bool.self) == true else { return 0 }
        let version = try await client.query("SELECT coalesce(max(version), 0) FROM schema_migrations", logger: logger)
        return try await version.first(decoding: Int.self) ?? 0
    }

    /// Throws `StorageError.schemaOutdated` when the database is older than this build needs.
    /// A newer schema is accepted: during a rolling upgrade old replicas run against it.
    package func requireCurrentSchema() async throws {
        let current = try await currentVersion()
        guard current >= Self.latestVersion else {
            throw StorageError.schemaOutdated(current: current, required: Self.latestVersion)
        }
    }

    private static func applyMissing(on connection: PostgresConnection, logger: Logger) async throws -> [Int] {
        try await connection.query(
            """
            CREATE TABLE IF NOT EXISTS schema_migrations (
                version integer PRIMARY KEY,
                name text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            )
            """,
            logger: logger
        )
        var present: Set<Int> = []
        for try await version in try await connection.query("SELECT version FROM schema_migrations", logger: logger)
            .decode(Int.self)
        {
            present.insert(version)
        }
        var applied: [Int] = []
        for migration in Migration.all where !present.contains(migration.version) {
            try await connection.withTransaction(logger: logger) { transaction in
                for statement in migration.statements {
                    try await transaction.query(PostgresQuery(unsafeSQL: statement), logger: logger)
                }
                try await transaction.query(
                    "INSERT INTO schema_migrations (version, name) VALUES (\(migration.version), \(migration.name))",
                    logger: logger
                )
            }
            logger.info(
                "Applied schema migration",
                metadata: ["mdm.schema_version": "\(migration.version)", "mdm.migration": "\(migration.name)"]
            )
            applied.append(migration.version)
        }
        return applied
    }
}
