import Logging
import PostgresNIO

/// What `/readyz` asks of PostgreSQL: is it reachable, and is the schema current.
package struct PostgresHealthCheck: Sendable {
    private let client: PostgresClient
    private let logger: Logger

    package init(client: PostgresClient, logger: Logger) {
        self.client = client
        self.logger = logger
    }

    /// Throws when no connection can run a trivial query.
    package func ping() async throws {
        try await client.query("SELECT 1", logger: logger)
    }

    /// The applied schema version (0 for an empty database).
    package func schemaVersion() async throws -> Int {
        try await SchemaMigrator(client: client, logger: logger).currentVersion()
    }

    /// Throws `StorageError.schemaOutdated` when the schema is older than this build needs.
    package func requireCurrentSchema() async throws {
        try await SchemaMigrator(client: client, logger: logger).requireCurrentSchema()
    }
}
