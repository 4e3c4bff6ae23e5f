import Logging
import MDMStorage
import PostgresNIO

/// The role's PostgreSQL pool, built from `ServerConfiguration`.
package enum Database {
    /// - Parameter metrics: Where the pool's live state goes (`PostgresPoolObserver`); `nil` for
    ///   one-shot commands that serve no `/metrics`.
    package static func makeClient(
        configuration: ServerConfiguration, logger: Logger, metrics: MDMMetrics? = nil
    ) throws(ConfigurationError) -> PostgresClient {
        let url: DatabaseURL
        do {
            url = try DatabaseURL(configuration.databaseURL)
        } catch {
            throw ConfigurationError(setting: "MDM_DATABASE_URL", problem: "\(error)")
        }
        let postgres = url.configuration(maximumConnections: configuration.databasePoolSize)
        guard let metrics else {
            return PostgresClient(configuration: postgres, backgroundLogger: logger)
        }
        metrics.recordPostgresPool(maximumConnections: configuration.databasePoolSize)
        let observer = PostgresPoolObserver(metrics: metrics)
        return PostgresClient(configuration: postgres, backgroundLogger: observer.backgroundLogger(wrapping: logger))
    }

    /// Waits until PostgreSQL answers, then refuses to continue on a schema older than this
    /// build needs. Run before the server accepts requests.
    package static func awaitCurrentSchema(client: PostgresClient, timeout: Double, logger: Logger) async throws {
        let migrator = SchemaMigrator(client: client, logger: logger)
        let deadline = ContinuousClock.now + .milliseconds(Int(timeout * 1000))
        var delay = Duration.milliseconds(100)
        while true {
            do {
                try await migrator.requireCurrentSchema()
                return
            } catch let error as StorageError {
                logger.critical("refusing to start: \(error.reason)")
                throw error
            } catch {
                guard ContinuousClock.now < deadline else {
                    logger.critical("PostgreSQL unreachable at start", metadata: ["error": "\(error)"])
                    throw error
                }
                logger.warning("waiting for PostgreSQL", metadata: ["error": "\(error)"])
                try await Task.sleep(for: delay)
                delay = min(delay * 2, .seconds(2))
            }
        }
    }
}
