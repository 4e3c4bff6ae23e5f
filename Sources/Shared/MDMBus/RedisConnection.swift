import Logging
import NIOCore
import NIOPosix
import NIOSSL

/// One connection to Redis. Any number of tasks may send on it at once: commands are
/// pipelined and each caller gets its own reply.
///
/// A blocking command (`XREADGROUP … BLOCK`) holds up every command sent after it on the same
/// connection; `RedisClient` therefore runs those on dedicated connections.
package final class RedisConnection: RedisCommandSending {
    /// `host:port` of the server.
    package let endpoint: String
    private let channel: any Channel
    private let handler: NIOLoopBound<RedisCommandHandler>
    private let defaultTimeout: Duration?
    private let status: ConnectionStatus

    private init(
        endpoint: String,
        channel: any Channel,
        handler: NIOLoopBound<RedisCommandHandler>,
        status: ConnectionStatus,
        defaultTimeout: Duration?
    ) {
        self.endpoint = endpoint
        self.status = status
        self.channel = channel
        self.handler = handler
        self.defaultTimeout = defaultTimeout
    }

    /// Connects, then authenticates and selects the database when the configuration says so.
    ///
    /// - Parameter sslContext: The TLS context for `configuration.tls`; made from it when `nil`.
    ///   Making one is costly, so a pool shares one.
    /// - Throws: `RedisError.connectFailed` or `RedisError.authenticationFailed`.
    package static func connect(
        configuration: RedisConfiguration,
        sslContext: NIOSSLContext? = nil,
        eventLoop: any EventLoop = MultiThreadedEventLoopGroup.singleton.next(),
        logger: Logger = Logger(label: "mdm.redis")
    ) async throws -> RedisConnection {
        let endpoint = configuration.endpoint
        let deadline = ContinuousClock.now + configuration.connectTimeout
        var tlsContext = sslContext
        if tlsContext == nil, let tls = configuration.tls {
            do {
                tlsContext = try NIOSSLContext(configuration: tls)
            } catch {
                throw RedisError.connectFailed(endpoint: endpoint, reason: "TLS configuration: \(error)")
            }
        }
        let status = ConnectionStatus()
        let channelOutput: (any Channel, NIOLoopBound<RedisCommandHandler>)
        do {
            channelOutput = try await ClientBootstrap(group: eventLoop)
                .connectTimeout(TimeAmount(configuration.connectTimeout))
                .channelOption(.socketOption(.so_keepalive), value: 1)
                .connect(host: configuration.host, port: configuration.port) { [tlsContext] channel in
                    channel.eventLoop.makeCompletedFuture {
                        let handler = RedisCommandHandler(status: status)
                        let pipeline = channel.pipeline.syncOperations
                        if let tlsContext {
                            let isIPAddress = (try? SocketAddress(ipAddress: configuration.host, port: 0)) != nil
                            try pipeline.addHandler(
                                NIOSSLClientHandler(
                                    context: tlsContext,
                                    serverHostname: isIPAddress ? nil : configuration.host
                                )
                            )
                        }
                        try pipeline.addHandler(ByteToMessageHandler(RESPDecoder()))
                        try pipeline.addHandler(handler)
                        return (channel, NIOLoopBound(handler, eventLoop: channel.eventLoop))
                    }
                }
        } catch {
            throw RedisError.connectFailed(endpoint: endpoint, reason: "\(error)")
        }
        let connection = RedisConnection(
            endpoint: endpoint,
            channel: channelOutput.0,
            handler: channelOutput.1,
            status: status,
            defaultTimeout: configuration.commandTimeout
        )
        do {
            try await connection.prepare(configuration, deadline: deadline)
        } catch {
            let reason = await connection.channelErrorDescription()
            await connection.close()
            switch error {
            case RedisError.connectionClosed:
                throw RedisError.connectFailed(
                    endpoint: endpoint,
                    reason: reason ?? "the server closed the connection during the handshake"
                )
            case RedisError.commandTimedOut(let command, let after):
                throw RedisError.connectFailed(endpoint: endpoint, reason: "no reply to \(command) within \(after)")
            default:
                throw error
            }
        }
        logger.debug("connected to Redis", metadata: [RedisLogKey.endpoint: "\(endpoint)"])
        return connection
    }

    /// `AUTH` and `SELECT` when configured, else a `PING`, so that a connection is only handed
    /// out once the server has answered on it.
    private func prepare(_ configuration: RedisConfiguration, deadline: ContinuousClock.Instant) async throws {
        var timeout: Duration {
            max(deadline - .now, .milliseconds(1))
        }
        if let password = configuration.password {
            var command: [RESPArgument] = ["AUTH"]
            if let username = configuration.username {
                command.append(.string(username))
            }
            command.append(.string(password))
            let reply = try await reply(to: command, timeout: timeout)
            if case .error(let message) = reply {
                throw RedisError.authenticationFailed(endpoint: endpoint, message: message)
            }
        }
        if configuration.database != 0 {
            let reply = try await reply(to: ["SELECT", .integer(configuration.database)], timeout: timeout)
            try checkHandshake(reply)
        }
        if configuration.password == nil, configuration.database == 0 {
            try checkHandshake(try await reply(to: ["PING"], timeout: timeout))
        }
    }

    private func checkHandshake(_ reply: RESPValue) throws {
        guard case .error(let message) = reply else {
            return
        }
        // NOAUTH: the server wants a password the configuration does not have.
        if message.hasPrefix("NOAUTH") {
            throw RedisError.authenticationFailed(endpoint: endpoint, message: message)
        }
        throw RedisError.server(message)
    }

    /// Whether the connection still takes commands. A closed (or closing) connection fails
    /// every command at once.
    package var isActive: Bool {
        !status.isClosed && channel.isActive
    }

    /// Commands sent and not yet answered by Redis, including those whose caller stopped
    /// waiting (timeout, cancellation): a blocking command counts until the server answers.
    package var outstandingReplies: Int {
        status.outstandingReplies
    }

    /// Completes when the connection has closed, for whatever reason.
    package var closeFuture: EventLoopFuture<Void> {
        channel.closeFuture
    }

    /// Sends one command and waits for its reply.
    ///
    /// - Parameter timeout: Bound on the wait; `nil` uses the configured command timeout.
    /// - Throws: `RedisError.server` for an error reply, `.connectionClosed`,
    ///   `.commandTimedOut`, or `CancellationError` when the calling task is cancelled.
    package func send(_ command: [RESPArgument], timeout: Duration?) async throws -> RESPValue {
        let reply = try await reply(to: command, timeout: timeout ?? defaultTimeout)
        if case .error(let message) = reply {
            throw RedisError.server(message)
        }
        return reply
    }

    /// Sends a command that may wait on the server for up to `block` (zero: indefinitely); the
    /// reply timeout is extended by `block`.
    package func sendBlocking(_ command: [RESPArgument], block: Duration) async throws -> RESPValue {
        let timeout = block == .zero ? nil : defaultTimeout.map { $0 + block }
        let reply = try await reply(to: command, timeout: timeout)
        if case .error(let message) = reply {
            throw RedisError.server(message)
        }
        return reply
    }

    /// The raw reply, error replies included. `timeout` is final here: `nil` waits without bound.
    private func reply(to command: [RESPArgument], timeout: Duration?) async throws -> RESPValue {
        var bytes = channel.allocator.buffer(capacity: ByteBuffer.estimatedRESPCommandSize(command))
        bytes.writeRESPCommand(command)
        let eventLoop = channel.eventLoop
        let promise = eventLoop.makePromise(of: RESPValue.self)
        let request = RedisRequest(bytes: bytes, reply: promise, timeout: timeout, name: command.first)
        status.commandSent()
        let handler = self.handler
        if eventLoop.inEventLoop {
            handler.value.enqueue(request)
        } else {
            eventLoop.execute { handler.value.enqueue(request) }
        }
        return try await withTaskCancellationHandler {
            try await promise.futureResult.get()
        } onCancel: {
            // A reply that arrives later is matched to this failed promise and dropped.
            promise.fail(CancellationError())
        }
    }

    /// Closes the connection; commands still waiting fail with `RedisError.connectionClosed`.
    package func close() async {
        channel.close(promise: nil)
        try? await channel.closeFuture.get()
    }

    private func channelErrorDescription() async -> String? {
        let handler = self.handler
        let description = try? await channel.eventLoop.submit {
            handler.value.firstError.map { "\($0)" }
        }.get()
        return description ?? nil
    }
}

/// Log metadata keys of the Redis client.
enum RedisLogKey {
    static let endpoint = "mdm.redis_endpoint"
}
