import Logging
import NIOCore
import NIOPosix
import NIOSSL
import ServiceLifecycle
import Synchronization

/// A pool of Redis connections.
///
/// - Ordinary commands go to the least loaded of `poolSize` pipelined connections, which are
///   opened on first use and reopened on use after they die.
/// - Blocking commands (`sendBlocking`, `xreadgroup(block:)`) and `withDedicatedConnection`
///   run on connections of their own, kept idle for reuse (at most `poolSize` of them), so a
///   blocked read never delays an `XADD`.
/// - When connecting fails, further attempts wait an exponential, jittered backoff; commands
///   arriving meanwhile fail at once with the last connect error instead of waiting, so callers
///   can fall back (Redis only carries push fan-out; PostgreSQL holds the truth).
///
/// Lifecycle: nothing runs in the background. Call `shutdown()` when done, or run `run()` as a
/// long-running service: it returns when its task is cancelled (with swift-service-lifecycle:
/// `cancelWhenGracefulShutdown { await client.run() }`) and closes every connection on the way
/// out. After shutdown every command throws `RedisError.clientShutDown`.
package final class RedisClient: RedisCommandSending {
    package let configuration: RedisConfiguration
    private let eventLoopGroup: any EventLoopGroup
    private let sslContext: NIOSSLContext?
    private let logger: Logger
    private let state: Mutex<State>

    private enum Slot {
        case disconnected
        case connecting(Task<RedisConnection, any Error>)
        case connected(RedisConnection)
    }

    private struct State {
        var slots: [Slot]
        /// Where the next least-loaded search starts, so equally loaded connections take turns.
        var cursor = 0
        var consecutiveFailures = 0
        /// No connection attempt before this instant (backoff after a failure).
        var retryAt: ContinuousClock.Instant?
        var lastError: (any Error)?
        var idleDedicated: [RedisConnection] = []
        var leasedDedicated: [ObjectIdentifier: RedisConnection] = [:]
        var runWaiters: [CheckedContinuation<Void, Never>] = []
        var shutdown: Task<Void, Never>?
    }

    private enum Lease {
        case ready(RedisConnection)
        case pending(Task<RedisConnection, any Error>)
    }

    /// - Throws: `RedisError.connectFailed` when the TLS configuration cannot be loaded.
    package init(
        configuration: RedisConfiguration,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger = Logger(label: "mdm.redis")
    ) throws {
        self.configuration = configuration
        self.eventLoopGroup = eventLoopGroup
        self.logger = logger
        if let tls = configuration.tls {
            do {
                self.sslContext = try NIOSSLContext(configuration: tls)
            } catch {
                throw RedisError.connectFailed(endpoint: configuration.endpoint, reason: "TLS configuration: \(error)")
            }
        } else {
            self.sslContext = nil
        }
        let slots = [Slot](repeating: .disconnected, count: max(1, configuration.poolSize))
        self.state = Mutex(State(slots: slots))
    }

    /// A client for a `redis://` or `rediss://` URL (see `RedisConfiguration`).
    package convenience init(
        url: String,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger = Logger(label: "mdm.redis")
    ) throws {
        try self.init(configuration: RedisConfiguration(url: url), eventLoopGroup: eventLoopGroup, logger: logger)
    }

    // MARK: Commands

    package func send(_ command: [RESPArgument], timeout: Duration?) async throws -> RESPValue {
        try await pooledConnection().send(command, timeout: timeout)
    }

    package func sendBlocking(_ command: [RESPArgument], block: Duration) async throws -> RESPValue {
        try await withDedicatedConnection { connection in
            try await connection.sendBlocking(command, block: block)
        }
    }

    /// Runs `body` with a connection no other caller uses meanwhile, for a loop of blocking
    /// reads or a `MULTI`/`EXEC` sequence. The connection goes back to an idle list afterwards
    /// if it is still open with nothing outstanding, and is closed otherwise.
    ///
    /// When the connection dies inside `body`, its commands throw `RedisError.connectionClosed`;
    /// leave `body` and call this again for a new connection.
    package func withDedicatedConnection<T>(
        isolation: isolated (any Actor)? = #isolation,
        _ body: (RedisConnection) async throws -> T
    ) async throws -> T {
        let connection = try await dedicatedConnection()
        let result: T
        do {
            result = try await body(connection)
        } catch {
            await giveBack(connection)
            throw error
        }
        await giveBack(connection)
        return result
    }

    // MARK: Lifecycle

    /// Waits until the calling task is cancelled or `shutdown()` is called, then shuts down.
    package func run() async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = state.withLock { state in
                    guard state.shutdown == nil, !Task.isCancelled else {
                        return true
                    }
                    state.runWaiters.append(continuation)
                    return false
                }
                if resumeNow {
                    continuation.resume()
                }
            }
        } onCancel: {
            let waiters = state.withLock { state in
                defer { state.runWaiters = [] }
                return state.runWaiters
            }
            for waiter in waiters {
                waiter.resume()
            }
        }
        await shutdown()
    }

    /// Closes every connection; commands still waiting fail with `RedisError.connectionClosed`
    /// and later ones with `RedisError.clientShutDown`. Safe to call more than once; every call
    /// returns once the connections are closed.
    package func shutdown() async {
        let task = state.withLock { state in
            if let shutdown = state.shutdown {
                return shutdown
            }
            let shutdown = Task { await self.closeEverything() }
            state.shutdown = shutdown
            return shutdown
        }
        await task.value
    }

    private func closeEverything() async {
        let (connections, attempts, waiters) = state.withLock { state in
            var connections = state.idleDedicated + state.leasedDedicated.values
            var attempts: [Task<RedisConnection, any Error>] = []
            for slot in state.slots {
                switch slot {
                case .connected(let connection): connections.append(connection)
                case .connecting(let attempt): attempts.append(attempt)
                case .disconnected: break
                }
            }
            state.slots = state.slots.map { _ in .disconnected }
            state.idleDedicated = []
            state.leasedDedicated = [:]
            defer { state.runWaiters = [] }
            return (connections, attempts, state.runWaiters)
        }
        await withTaskGroup(of: Void.self) { group in
            for connection in connections {
                group.addTask { await connection.close() }
            }
        }
        // An attempt still under way closes its own connection when it sees the shutdown.
        for attempt in attempts {
            _ = try? await attempt.value
        }
        for waiter in waiters {
            waiter.resume()
        }
        logger.debug("Redis client shut down", metadata: [RedisLogKey.endpoint: "\(configuration.endpoint)"])
    }

    // MARK: Pool

    private func pooledConnection() async throws -> RedisConnection {
        let lease = try state.withLock { state throws -> Lease in
            guard state.shutdown == nil else {
                throw RedisError.clientShutDown
            }
            // A connection can close before its close callback has run; do not hand it out.
            for index in state.slots.indices {
                if case .connected(let connection) = state.slots[index], !connection.isActive {
                    state.slots[index] = .disconnected
                }
            }
            if state.retryAt.map({ ContinuousClock.now >= $0 }) ?? true {
                for index in state.slots.indices {
                    if case .disconnected = state.slots[index] {
                        state.slots[index] = .connecting(Task { try await self.connectSlot(index) })
                    }
                }
            }
            var best: (index: Int, connection: RedisConnection, load: Int)?
            for offset in state.slots.indices {
                let index = (state.cursor + offset) % state.slots.count
                guard case .connected(let connection) = state.slots[index] else {
                    continue
                }
                let load = connection.outstandingReplies
                if load < best?.load ?? Int.max {
                    best = (index, connection, load)
                    if load == 0 {
                        break
                    }
                }
            }
            if let best {
                state.cursor = (best.index + 1) % state.slots.count
                return .ready(best.connection)
            }
            for slot in state.slots {
                if case .connecting(let attempt) = slot {
                    return .pending(attempt)
                }
            }
            throw state.lastError ?? RedisError.connectionClosed
        }
        switch lease {
        case .ready(let connection): return connection
        case .pending(let attempt): return try await attempt.value
        }
    }

    private func connectSlot(_ index: Int) async throws -> RedisConnection {
        let connection: RedisConnection
        do {
            connection = try await openConnection()
        } catch {
            state.withLock { state in
                if state.shutdown == nil {
                    state.slots[index] = .disconnected
                }
            }
            throw error
        }
        let accepted = state.withLock { state in
            guard state.shutdown == nil else {
                return false
            }
            state.slots[index] = .connected(connection)
            return true
        }
        guard accepted else {
            await connection.close()
            throw RedisError.clientShutDown
        }
        connection.closeFuture.whenComplete { [weak self] _ in
            self?.slotConnectionClosed(connection, index: index)
        }
        return connection
    }

    private func slotConnectionClosed(_ connection: RedisConnection, index: Int) {
        let wasCurrent = state.withLock { state in
            guard case .connected(let current) = state.slots[index], current === connection else {
                return false
            }
            state.slots[index] = .disconnected
            return true
        }
        if wasCurrent {
            logger.warning(
                "Redis connection lost; reconnecting on next use",
                metadata: [RedisLogKey.endpoint: "\(configuration.endpoint)"]
            )
        }
    }

    /// Connects and keeps the backoff bookkeeping; failures leave their slot disconnected.
    private func openConnection() async throws -> RedisConnection {
        do {
            let connection = try await RedisConnection.connect(
                configuration: configuration,
                sslContext: sslContext,
                eventLoop: eventLoopGroup.next(),
                logger: logger
            )
            let recovered = state.withLock { state in
                defer {
                    state.consecutiveFailures = 0
                    state.retryAt = nil
                    state.lastError = nil
                }
                return state.consecutiveFailures > 0
            }
            if recovered {
                logger.info("Redis reachable again", metadata: [RedisLogKey.endpoint: "\(configuration.endpoint)"])
            }
            return connection
        } catch {
            let firstFailure = state.withLock { state -> Bool in
                let now = ContinuousClock.now
                state.lastError = error
                // Attempts started together fail together: count them as one failure.
                guard state.retryAt.map({ now >= $0 }) ?? true else {
                    return false
                }
                state.consecutiveFailures += 1
                state.retryAt = now + configuration.reconnectBackoff.delay(afterFailures: state.consecutiveFailures)
                return state.consecutiveFailures == 1
            }
            if firstFailure {
                logger.warning(
                    "cannot connect to Redis",
                    metadata: [RedisLogKey.endpoint: "\(configuration.endpoint)", "error": "\(error)"]
                )
            }
            throw error
        }
    }

    // MARK: Dedicated connections

    private func dedicatedConnection() async throws -> RedisConnection {
        let idle = try state.withLock { state throws -> RedisConnection? in
            guard state.shutdown == nil else {
                throw RedisError.clientShutDown
            }
            while let idle = state.idleDedicated.popLast() {
                if idle.isActive {
                    state.leasedDedicated[ObjectIdentifier(idle)] = idle
                    return idle
                }
            }
            if let retryAt = state.retryAt, ContinuousClock.now < retryAt {
                throw state.lastError ?? RedisError.connectionClosed
            }
            return nil
        }
        if let idle {
            return idle
        }
        let connection = try await openConnection()
        let accepted = state.withLock { state in
            guard state.shutdown == nil else {
                return false
            }
            state.leasedDedicated[ObjectIdentifier(connection)] = connection
            return true
        }
        guard accepted else {
            await connection.close()
            throw RedisError.clientShutDown
        }
        return connection
    }

    private func giveBack(_ connection: RedisConnection) async {
        let keep = state.withLock { state in
            state.leasedDedicated[ObjectIdentifier(connection)] = nil
            guard state.shutdown == nil, connection.isActive, connection.outstandingReplies == 0,
                state.idleDedicated.count < state.slots.count
            else {
                return false
            }
            state.idleDedicated.append(connection)
            return true
        }
        if !keep {
            await connection.close()
        }
    }
}

// The client runs in a role's service group: its `run()` waits for shutdown and then closes
// the pool, after the services listed later (which use it) have stopped.
extension RedisClient: Service {}
