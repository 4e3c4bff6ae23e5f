import Logging
import Metrics
import Synchronization

/// The live state of a role's PostgreSQL pool, for `/metrics`.
///
/// postgres-nio 1.33 keeps its pool's observability delegate internal; what it does publish
/// is a debug log line on the client's background logger when the pool starts a connection
/// ("Creating new connection"), fails to ("Connection creation failed") and loses one
/// ("Connection closed"). `backgroundLogger(wrapping:)` gives the client a log handler that
/// counts those lines and passes everything at or above the role's level on, so the pool is
/// observed without forking the library. The pool opens connections on demand, up to
/// `MDM_DATABASE_POOL_SIZE`, when every open one is busy: open connections near the maximum
/// mean the role is waiting for PostgreSQL. (Leases are not observable: the delegate calls
/// that carry them log nothing in this version.) A postgres-nio upgrade that rewords the
/// lines is caught by `PostgresPoolMetricsTests`.
package final class PostgresPoolObserver: Sendable {
    private let metrics: MDMMetrics
    /// Connections open or being opened.
    private let open = Mutex(0)

    package init(metrics: MDMMetrics) {
        self.metrics = metrics
        metrics.recordPostgresPool(openConnections: 0)
    }

    /// The background logger for a `PostgresClient`: `logger`'s handler, level and metadata,
    /// plus the pool events.
    package func backgroundLogger(wrapping logger: Logger) -> Logger {
        let upstream = logger.handler
        return Logger(label: logger.label) { _ in PoolEventLogHandler(upstream: upstream, observer: self) }
    }

    fileprivate func observe(_ message: String) {
        let change: Int
        switch message {
        case "Creating new connection": change = 1
        case "Connection closed": change = -1
        case "Connection creation failed":
            change = -1
            metrics.recordPostgresConnectFailure()
        default: return
        }
        let count = open.withLock { open in
            open = max(0, open + change)
            return open
        }
        metrics.recordPostgresPool(openConnections: count)
    }
}

/// Forwards what the role would log anyway and counts postgres-nio's debug-level pool events.
private struct PoolEventLogHandler: LogHandler {
    var upstream: any LogHandler
    let observer: PostgresPoolObserver

    /// Debug at least, so the pool's event lines arrive here.
    var logLevel: Logger.Level {
        get { min(upstream.logLevel, .debug) }
        set { upstream.logLevel = newValue }
    }

    var metadata: Logger.Metadata {
        get { upstream.metadata }
        set { upstream.metadata = newValue }
    }

    var metadataProvider: Logger.MetadataProvider? {
        get { upstream.metadataProvider }
        set { upstream.metadataProvider = newValue }
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { upstream[metadataKey: key] }
        set { upstream[metadataKey: key] = newValue }
    }

    func log(event: LogEvent) {
        observer.observe(event.message.description)
        if event.level >= upstream.logLevel {
            upstream.log(event: event)
        }
    }
}
