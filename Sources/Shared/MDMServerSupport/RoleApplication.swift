import Foundation
import Hummingbird
import Logging
import PostgresNIO
import ServiceLifecycle

/// Assembles a role's Hummingbird application the same way for every role: its router, its
/// PostgreSQL pool as a lifecycle service, and a start-up gate on the schema version.
package enum RoleApplication {
    /// Builds a role: its PostgreSQL pool; a router that gives every request an ID and counts
    /// it; `/livez`, `/readyz` (PostgreSQL plus `readinessChecks`) and `/metrics`; the role's
    /// own routes; and the schema gate before serving.
    ///
    /// - Parameter metrics: Where the role's metrics go and what `/metrics` shows; a process
    ///   has one (`MDMMetrics.process`), tests running several roles in one process give
    ///   each its own.
    ///
    /// `services` (given the pool) run beside the server; at shutdown the server stops first,
    /// then the services in reverse order, then the pool.
    package static func build(
        server: ServerConfiguration,
        logger: Logger,
        metrics: MDMMetrics = .process,
        readinessChecks: [ReadinessCheck] = [],
        services: (PostgresClient) throws -> [any Service] = { _ in [] },
        onServerRunning: @escaping @Sendable (Int) async -> Void,
        routes: (Router<BasicRequestContext>, PostgresClient) throws -> Void
    ) throws -> some ApplicationProtocol {
        let database = try Database.makeClient(configuration: server, logger: logger, metrics: metrics)
        let router = Router()
        // Router middleware wraps only the routes added after it: these two come first so
        // that every route, the health endpoints included, is identified and counted.
        router.add(middleware: RequestIDMiddleware())
        router.add(middleware: RequestMetricsMiddleware(metrics: metrics))
        HealthController(checks: [.database(database, logger: logger)] + readinessChecks).addRoutes(to: router)
        MetricsController(metrics: metrics).addRoutes(to: router)
        try routes(router, database)
        let portFile = server.portFile
        var app = Application(
            router: router,
            configuration: .init(address: .hostname(server.host, port: server.port), serverName: nil),
            services: [database] + (try services(database)),
            onServerRunning: { channel in
                let port = channel.localAddress?.port ?? server.port
                logger.info("listening", metadata: ["host": "\(server.host)", "port": "\(port)"])
                if let portFile {
                    writePortFile(port, to: portFile, logger: logger)
                }
                await onServerRunning(port)
            },
            logger: logger
        )
        let timeout = server.databaseStartupTimeout
        app.beforeServerStarts {
            try await Database.awaitCurrentSchema(client: database, timeout: timeout, logger: logger)
        }
        return app
    }

    /// Written whole (temporary file, then rename), so a reader never sees half a number.
    private static func writePortFile(_ port: Int, to path: String, logger: Logger) {
        do {
            try Data("\(port)\n".utf8).write(to: URL(fileURLWithPath: path), options: .atomic)
        } catch {
            logger.error("cannot write MDM_PORT_FILE", metadata: ["path": "\(path)", "error": "\(error)"])
        }
    }
}
