import Foundation
import Hummingbird
import Logging
import NIOPosix
import PostgresNIO
import ServiceLifecycle

/// Assembles a role's Hummingbird application the same way for every role: its router, its
/// PostgreSQL pool as a lifecycle service, and a start-up gate on the schema version.
package enum RoleApplication {
    /// Builds a role: its PostgreSQL pool, a router with `/livez` and `/readyz` (PostgreSQL
    /// plus `readinessChecks`), the role's own routes, and the schema gate before serving.
    /// `workers` are background services that need the pool (the webhook worker); they stop
    /// before it does.
    package static func build(
        server: ServerConfiguration,
        logger: Logger,
        readinessChecks: [ReadinessCheck] = [],
        services: [any Service] = [],
        workers: (PostgresClient) throws -> [any Service] = { _ in [] },
        onServerRunning: @escaping @Sendable (Int) async -> Void,
        routes: (Router<BasicRequestContext>, PostgresClient) throws -> Void
    ) throws -> some ApplicationProtocol {
        let database = try Database.makeClient(configuration: server, logger: logger)
        let router = Router()
        HealthController(checks: [.database(database, logger: logger)] + readinessChecks).addRoutes(to: router)
        try routes(router, database)
        var app = Application(
            router: router,
            configuration: .init(address: .hostname(server.host, port: server.port), serverName: nil),
            // Shut down in reverse order: workers first, the pool they use last.
            services: [database] + services + (try workers(database)),
            onServerRunning: { channel in
                await onServerRunning(channel.localAddress?.port ?? server.port)
            },
            logger: logger
        )
        let timeout = server.databaseStartupTimeout
        app.beforeServerStarts {
            try await Database.awaitCurrentSchema(client: database, timeout: timeout, logger: logger)
        }
        return app
    }
}

/// The body of every role's `main`: settings, logging, build, run until SIGTERM/SIGINT.
package enum RoleMain {
    /// - Parameter subcommands: one-shot commands (`APIService migrate`) run instead of serving.
    package static func run<App: ApplicationProtocol>(
        role: String,
        subcommands: [String: @Sendable (Settings, Logger) async throws -> Void] = [:],
        build: @Sendable (Settings, Logger) async throws -> App
    ) async throws {
        // Run Swift concurrency on NIO's event loops: handlers, the PostgreSQL pool and the
        // sockets then share threads instead of hopping between two pools on every request.
        _ = NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor()
        let settings: Settings
        do {
            settings = try Settings.fromProcess()
            let unknown = settings.unknownFlags(known: SettingCatalogue.names)
            if !unknown.isEmpty {
                throw ConfigurationError(setting: unknown.joined(separator: ", "), problem: "unknown option")
            }
        } catch {
            fail("\(error)")
        }
        let logger = LogSetup.bootstrap(role: role, settings: settings)
        if let name = settings.arguments.first {
            guard let subcommand = subcommands[name], settings.arguments.count == 1 else {
                fail("unknown command: \(settings.arguments.joined(separator: " "))")
            }
            do {
                try await subcommand(settings, logger)
                return
            } catch {
                fail("\(name) failed: \(error)")
            }
        }
        let app: App
        do {
            app = try await build(settings, logger)
        } catch {
            fail("\(error)")
        }
        try await app.runService()
    }

    static func fail(_ message: String) -> Never {
        FileHandle.standardError.write(Data("\(message)\n".utf8))
        exit(2)
    }
}

/// Logging for a role process.
package enum LogSetup {
    package static func bootstrap(role: String, settings: Settings) -> Logger {
        let level = Logger.Level(rawValue: settings.string("MDM_LOG_LEVEL", default: "info").lowercased()) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        var logger = Logger(label: "swiftmdm.\(role)")
        logger.logLevel = level
        return logger
    }
}
