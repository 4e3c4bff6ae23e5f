import Metrics
import Prometheus

/// SwiftMDM's own metrics, named once: every name, label and unit lives here, and the rest of
/// the code records through these methods, so `/metrics` and `docs/operations.md` can be read
/// off one file.
///
/// Each value records into one Prometheus registry (what `/metrics` shows). A role process
/// uses `MDMMetrics.process`, which `RoleMain` also installs as the swift-metrics backend so
/// library metrics land in the same registry; tests give each in-process role its own.
package struct MDMMetrics: Sendable {
    /// Metric names. Counters end in `_total`, durations are seconds (Prometheus conventions).
    package enum Name {
        package static let httpRequests = "mdm_http_requests_total"
        package static let httpRequestDuration = "mdm_http_request_duration_seconds"
        package static let checkins = "mdm_checkins_total"
        package static let commandReports = "mdm_command_reports_total"
        package static let commandsEnqueued = "mdm_commands_enqueued_total"
        package static let pushes = "mdm_pushes_total"
        package static let apnsRequestDuration = "mdm_apns_request_duration_seconds"
        package static let pushStreamPending = "mdm_push_stream_pending_entries"
        package static let pushStreamLag = "mdm_push_stream_lag_entries"
        package static let postgresPoolMaxConnections = "mdm_postgres_pool_max_connections"
        package static let postgresPoolConnections = "mdm_postgres_pool_connections"
        package static let postgresConnectFailures = "mdm_postgres_connect_failures_total"
    }

    /// The registry `/metrics` renders.
    package let registry: PrometheusCollectorRegistry
    /// The swift-metrics view of `registry`, for code that speaks swift-metrics.
    package let factory: PrometheusMetricsFactory

    /// Metrics recorded into `registry` (a fresh one by default: tests isolate roles that way).
    package init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.registry = registry
        self.factory = PrometheusMetricsFactory(registry: registry)
    }

    /// The process's metrics: what a role serves unless a test passes its own.
    package static let process = MDMMetrics()

    /// The Prometheus text exposition (format 0.0.4) of everything recorded so far.
    package func exposition() -> [UInt8] {
        registry.emitToBuffer()
    }

    // MARK: HTTP

    /// One answered request. `route` is the matched route pattern (`/v1/enqueue/{ids}`), never
    /// a raw path: raw paths carry IDs and would make a series per device.
    package func recordRequest(route: String, method: String, status: Int, duration: Duration) {
        Counter(
            label: Name.httpRequests,
            dimensions: [("route", route), ("method", method), ("status", String(status))],
            factory: factory
        ).increment()
        Timer(
            label: Name.httpRequestDuration,
            dimensions: [("route", route), ("method", method)],
            factory: factory
        ).record(duration: duration)
    }

    // MARK: Device and API traffic

    /// A check-in of `messageType` (one of the types the server decodes, so the set is bounded).
    package func recordCheckin(messageType: String) {
        Counter(label: Name.checkins, dimensions: [("message_type", messageType)], factory: factory).increment()
    }

    /// A command report with `Status` `status`. Devices can send any string there, so values
    /// outside Apple's documented set are counted as `other`.
    package func recordCommandReport(status: String) {
        let known = ["Idle", "Acknowledged", "Error", "CommandFormatError", "NotNow"]
        let label = known.contains(status) ? status : "other"
        Counter(label: Name.commandReports, dimensions: [("status", label)], factory: factory).increment()
    }

    /// A command queued for `targets` enrollments (one queue entry each).
    package func recordCommandsEnqueued(targets: Int) {
        guard targets > 0 else { return }
        Counter(label: Name.commandsEnqueued, factory: factory).increment(by: targets)
    }

    // MARK: Push (PushService)

    /// What became of one push.
    package enum PushOutcome: String, Sendable, CaseIterable {
        /// APNs answered 200.
        case sent
        /// APNs answered 410 `Unregistered`: the token is dead.
        case unregistered
        /// APNs refused it (any other 4xx): bad token, topic or certificate.
        case rejected
        /// No answer or a 5xx/429 from APNs, or a connection failure: worth retrying.
        case failed
        /// Dropped because another push to the same enrollment was already on its way.
        case coalesced
        /// Nothing to send to: no push token or push certificate for the enrollment.
        case skipped
    }

    /// One push, by outcome.
    package func recordPush(_ outcome: PushOutcome) {
        Counter(label: Name.pushes, dimensions: [("outcome", outcome.rawValue)], factory: factory).increment()
    }

    /// Time from sending one request to APNs to its response (or failure).
    package func recordAPNsRequest(duration: Duration) {
        Timer(label: Name.apnsRequestDuration, factory: factory).record(duration: duration)
    }

    /// The push stream's consumer group as last observed: `pending` entries delivered to a
    /// consumer but not acknowledged (XPENDING), `lag` entries not yet delivered to the group
    /// (XINFO GROUPS `lag`).
    package func recordPushStream(pending: Int, lag: Int) {
        Gauge(label: Name.pushStreamPending, factory: factory).record(pending)
        Gauge(label: Name.pushStreamLag, factory: factory).record(lag)
    }

    // MARK: PostgreSQL

    /// The pool's configured ceiling.
    package func recordPostgresPool(maximumConnections: Int) {
        Gauge(label: Name.postgresPoolMaxConnections, factory: factory).record(maximumConnections)
    }

    /// The pool's connections open or being opened, as `PostgresPoolObserver` last saw them.
    package func recordPostgresPool(openConnections: Int) {
        Gauge(label: Name.postgresPoolConnections, factory: factory).record(openConnections)
    }

    /// An attempt to open a pool connection that failed (PostgreSQL down, refused, bad password).
    package func recordPostgresConnectFailure() {
        Counter(label: Name.postgresConnectFailures, factory: factory).increment()
    }
}
