import Foundation
import Hummingbird
import Logging
import Metrics
import NIOCore
import NIOPosix
import ServiceLifecycle
import Synchronization

/// The body of every role's `main`: settings, logging, metrics, build, then serve until
/// SIGTERM or SIGINT and drain.
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
        let logger: Logger
        let grace: Duration
        do {
            settings = try Settings.fromProcess()
            let unknown = settings.unknownFlags(known: SettingCatalogue.names)
            if !unknown.isEmpty {
                throw ConfigurationError(setting: unknown.joined(separator: ", "), problem: "unknown option")
            }
            logger = try LogSetup.bootstrap(role: role, settings: settings)
            grace = try shutdownGrace(settings)
        } catch {
            fail("\(error)")
        }
        // Library metrics (anything using swift-metrics' global API) land in the registry
        // `/metrics` shows.
        MetricsSystem.bootstrap(MDMMetrics.process.factory)
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
        let drain: ShutdownOutcome
        do {
            drain = try await serve(app, grace: grace, logger: logger)
        } catch {
            logger.critical("stopped", metadata: ["error": "\(error)"])
            exit(1)
        }
        if drain == .abandoned {
            // Work was cut off: say so in the exit status too.
            logger.error("stopped; the drain overran MDM_SHUTDOWN_GRACE_SECONDS and in-flight work was abandoned")
            exit(1)
        }
        logger.info("stopped")
    }

    /// Runs `app` until SIGTERM or SIGINT, then shuts down gracefully: the server stops
    /// accepting connections, answers the requests it has, and the services (the PostgreSQL
    /// pool last) stop. After `grace` the remaining work is cancelled (`.abandoned`), and if
    /// that does not end it within `ShutdownDeadline.cancellationAllowance`, the process exits
    /// with 1.
    package static func serve(_ app: some ApplicationProtocol, grace: Duration, logger: Logger) async throws
        -> ShutdownOutcome
    {
        let deadline = ShutdownDeadline(grace: grace, logger: logger)
        var configuration = ServiceGroupConfiguration(
            services: [
                .init(service: app),
                // Last, so it is the first told to shut down and starts the clock at once.
                .init(service: deadline),
            ],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger
        )
        configuration.maximumGracefulShutdownDuration = grace
        try await ServiceGroup(configuration: configuration).run()
        return deadline.outcome()
    }

    /// `MDM_SHUTDOWN_GRACE_SECONDS`: 0 to 3600 seconds.
    package static func shutdownGrace(_ settings: Settings) throws(ConfigurationError) -> Duration {
        let seconds = try settings.double("MDM_SHUTDOWN_GRACE_SECONDS", default: 25)
        guard seconds <= 3600 else {
            throw ConfigurationError(setting: "MDM_SHUTDOWN_GRACE_SECONDS", problem: "\(seconds) is over 3600")
        }
        return .milliseconds(Int(seconds * 1000))
    }

    static func fail(_ message: String) -> Never {
        FileHandle.standardError.write(Data("\(message)\n".utf8))
        exit(2)
    }
}

/// Ends the process when a graceful shutdown overruns its grace period and cancellation does
/// not finish it either (a service that ignores cancellation must not keep a replica around
/// until the orchestrator kills it without a word).
struct ShutdownDeadline: Service {
    static let cancellationAllowance = Duration.seconds(2)

    var grace: Duration
    var logger: Logger
    /// When graceful shutdown began.
    private let started = Locked<ContinuousClock.Instant?>(nil)

    init(grace: Duration, logger: Logger) {
        self.grace = grace
        self.logger = logger
    }

    /// Whether the drain ended within the grace period; call once the group has finished.
    func outcome() -> ShutdownOutcome {
        guard let started = started.value else { return .drained }
        return ContinuousClock.now - started < grace ? .drained : .abandoned
    }

    func run() async {
        do {
            try await gracefulShutdown()
        } catch {
            return  // Cancelled: the group is ending for another reason.
        }
        started.set(ContinuousClock.now)
        logger.notice("shutting down: draining in-flight work", metadata: ["grace": "\(grace)"])
        let deadline = grace + Self.cancellationAllowance
        let logger = logger
        // Detached on purpose: the group cancels its children when the grace period ends,
        // and this timer must outlive that.
        Task.detached {
            try? await Task.sleep(for: deadline)
            logger.critical("shutdown overran its grace period; exiting", metadata: ["grace": "\(deadline)"])
            exit(1)
        }
    }
}

/// How a graceful shutdown ended.
package enum ShutdownOutcome: Sendable, Equatable {
    /// Everything in flight finished within the grace period (or the group ended on its own).
    case drained
    /// The grace period ran out and the remaining work was cancelled.
    case abandoned
}

/// A value shared between a service and its owner.
private final class Locked<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>

    init(_ value: Value) { mutex = Mutex(value) }

    var value: Value { mutex.withLock { $0 } }

    func set(_ value: Value) { mutex.withLock { $0 = value } }
}
