import Logging
import MDMBus
import MDMTestSupport
import NIOCore
import NIOPosix
import Testing

/// Authentication, failures and recovery, against `redis-server` processes each test starts,
/// kills and restarts itself.
@Suite(.enabled(if: TestRedis.isEnabled, "set MDM_TEST_REDIS_URL or run deploy/local/test"))
struct RedisClientLifecycleTests {
    @Test
    func passwordAuthenticates() async throws {
        let server = try await TestRedisServer.start(password: "correct horse")
        let client = try RedisClient(
            url: TestRedis.withGenerousConnectTimeout("redis://:correct%20horse@127.0.0.1:\(server.port)"),
            logger: .quiet)
        #expect(try await client.ping() == "PONG")
        await client.shutdown()
        await server.kill()
    }

    @Test
    func userAndPasswordAuthenticate() async throws {
        let server = try await TestRedisServer.start(password: "admin-password")
        let admin = try RedisClient(url: server.url, logger: .quiet)
        _ = try await admin.send(["ACL", "SETUSER", "pusher", "on", ">pusher-password", "~*", "+@all"])
        let client = try RedisClient(
            url: TestRedis.withGenerousConnectTimeout("redis://pusher:pusher-password@127.0.0.1:\(server.port)"),
            logger: .quiet)
        #expect(try await client.send(["ACL", "WHOAMI"]).string == "pusher")
        await client.shutdown()
        await admin.shutdown()
        await server.kill()
    }

    @Test
    func wrongPasswordIsAnAuthenticationError() async throws {
        let server = try await TestRedisServer.start(password: "right")
        let client = try RedisClient(
            url: TestRedis.withGenerousConnectTimeout("redis://:wrong@127.0.0.1:\(server.port)"), logger: .quiet)
        let error = await #expect(throws: RedisError.self) { try await client.ping() }
        guard case .authenticationFailed(let endpoint, let message) = error else {
            Issue.record("expected authenticationFailed, got \(String(describing: error))")
            return
        }
        #expect(endpoint == "127.0.0.1:\(server.port)")
        #expect(message.hasPrefix("WRONGPASS"))
        #expect(!"\(error.map { "\($0)" } ?? "")".contains("wrong@"))
        let unauthenticated = try RedisClient(
            url: TestRedis.withGenerousConnectTimeout("redis://127.0.0.1:\(server.port)"), logger: .quiet)
        await #expect(
            throws: RedisError.authenticationFailed(
                endpoint: "127.0.0.1:\(server.port)",
                message: "NOAUTH Authentication required."
            )
        ) {
            _ = try await unauthenticated.send(["GET", "x"])
        }
        await unauthenticated.shutdown()
        await client.shutdown()
        await server.kill()
    }

    /// Killing Redis fails commands waiting on it promptly; once a server is back on the same
    /// port the client reconnects by itself.
    @Test
    func clientRecoversAfterTheServerIsKilledAndRestarted() async throws {
        var server = try await TestRedisServer.start()
        var configuration = try RedisConfiguration(url: server.url)
        configuration.reconnectBackoff = RedisBackoff(initial: .zero, maximum: .zero)
        let client = try RedisClient(configuration: configuration, logger: .quiet)
        #expect(try await client.ping() == "PONG")

        try await client.withDedicatedConnection { connection in
            let blocked = Task { try await connection.sendBlocking(["BLPOP", "never-pushed", 0], block: .zero) }
            try await waitUntilBlocked(client)
            let started = ContinuousClock.now
            await server.kill()
            await #expect(throws: RedisError.connectionClosed) { try await blocked.value }
            // The read blocks forever unless the loss of the server fails it; the bound only
            // has to rule out waiting for a timeout, so it is generous for a loaded CI machine.
            #expect(ContinuousClock.now - started < .seconds(10))
        }
        await #expect(throws: RedisError.self) { try await client.ping() }

        server = try await server.restarted()
        #expect(try await client.ping() == "PONG")
        #expect(try await client.xadd(stream: "after-restart", fields: [("n", "1")]).isEmpty == false)
        await client.shutdown()
        await server.kill()
    }

    @Test
    func connectingWhereNothingListensFailsFast() async throws {
        let server = try await TestRedisServer.start()
        await server.kill()
        let client = try RedisClient(url: server.url, logger: .quiet)
        let started = ContinuousClock.now
        let error = await #expect(throws: RedisError.self) { try await client.ping() }
        // Refused at once: far inside the 30 s connect timeout that a hang would run into.
        #expect(ContinuousClock.now - started < .seconds(10))
        guard case .connectFailed(let endpoint, let reason) = error else {
            Issue.record("expected connectFailed, got \(String(describing: error))")
            return
        }
        #expect(endpoint == "127.0.0.1:\(server.port)")
        #expect(
            !reason.contains("within") && !reason.lowercased().contains("timeout"),
            "a refused connection, not a timeout: \(reason)"
        )
        await client.shutdown()
    }

    /// During the backoff after a failed connect, commands fail at once with the connect
    /// error, without another attempt, even if the server has come back meanwhile.
    @Test
    func commandsFailFastDuringTheReconnectBackoff() async throws {
        let stopped = try await TestRedisServer.start()
        await stopped.kill()
        var configuration = try RedisConfiguration(url: stopped.url)
        configuration.reconnectBackoff = RedisBackoff(initial: .seconds(60), maximum: .seconds(60))
        // One connection, so that no attempt of another pool slot is still under way when the
        // server comes back.
        configuration.poolSize = 1
        let client = try RedisClient(configuration: configuration, logger: .quiet)
        await #expect(throws: RedisError.self) { try await client.ping() }
        let server = try await stopped.restarted()
        let error = await #expect(throws: RedisError.self) { try await client.ping() }
        guard case .connectFailed = error else {
            Issue.record("expected the remembered connectFailed, got \(String(describing: error))")
            return
        }
        await #expect(throws: RedisError.self) {
            try await client.xreadgroup(group: "g", consumer: "c", stream: "s", block: .seconds(1))
        }
        await client.shutdown()
        await server.kill()
    }

    /// A server that accepts connections but never answers (hung, or not Redis) fails commands
    /// within the configured timeouts instead of hanging.
    @Test
    func unresponsiveServerFailsCommandsWithinTheTimeout() async throws {
        let silent = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(host: "127.0.0.1", port: 0)
            .get()
        let port = try #require(silent.localAddress?.port)
        let client = try RedisClient(
            url: TestRedis.withGenerousConnectTimeout("redis://127.0.0.1:\(port)?connect_timeout_ms=200"),
            logger: .quiet)
        let started = ContinuousClock.now
        let error = await #expect(throws: RedisError.self) { try await client.ping() }
        // Fails by the 200 ms connect timeout rather than hanging; generous for a loaded machine.
        #expect(ContinuousClock.now - started < .seconds(10))
        guard case .connectFailed = error else {
            Issue.record("expected connectFailed, got \(String(describing: error))")
            return
        }
        await client.shutdown()
        try await silent.close()
    }

    @Test
    func shutdownClosesConnectionsAndRejectsLaterCommands() async throws {
        let server = try await TestRedisServer.start()
        let client = try RedisClient(url: server.url, logger: .quiet)
        try await client.xgroupCreate(stream: "s", group: "g")
        let blocked = Task {
            try await client.xreadgroup(group: "g", consumer: "c", stream: "s", block: .zero)
        }
        try await waitUntilBlocked(client)
        await client.shutdown()
        await #expect(throws: RedisError.connectionClosed) { try await blocked.value }
        await #expect(throws: RedisError.clientShutDown) { try await client.ping() }
        await server.kill()
    }

    @Test
    func cancellingRunShutsTheClientDown() async throws {
        let server = try await TestRedisServer.start()
        let client = try RedisClient(url: server.url, logger: .quiet)
        let running = Task { await client.run() }
        #expect(try await client.ping() == "PONG")
        running.cancel()
        await running.value
        await #expect(throws: RedisError.clientShutDown) { try await client.ping() }
        await server.kill()
    }

    @Test
    func redissConnectsOverTLS() async throws {
        let files = try await TestCertificates.make()
        let server = try await TestRedisServer.start(tls: files)
        let url = TestRedis.withGenerousConnectTimeout(
            "rediss://localhost:\(server.port)?tls_ca_file=\(files.certificateAuthority)"
        )
        let client = try RedisClient(url: url, logger: .quiet)
        #expect(try await client.ping() == "PONG")
        let id = try await client.xadd(stream: "tls-stream", fields: [("n", "1")])
        #expect(!id.isEmpty)
        await client.shutdown()

        // The server's certificate is not trusted without the test CA.
        let untrusting = try RedisClient(
            url: TestRedis.withGenerousConnectTimeout("rediss://localhost:\(server.port)"), logger: .quiet)
        let error = await #expect(throws: RedisError.self) { try await untrusting.ping() }
        guard case .connectFailed = error else {
            Issue.record("expected connectFailed, got \(String(describing: error))")
            return
        }
        await untrusting.shutdown()
        await server.kill()
    }

    /// Waits until Redis reports a client blocked in a command, by asking Redis itself.
    private func waitUntilBlocked(_ client: RedisClient) async throws {
        // Generous: on a loaded CI machine the blocking command may take seconds to be sent.
        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline {
            let info = try await client.send(["INFO", "clients"]).string ?? ""
            if !info.contains("blocked_clients:0") {
                return
            }
            await Task.yield()
        }
        Issue.record("no client became blocked")
    }
}

extension Logger {
    /// Errors only: the lifecycle tests provoke the client's warnings on purpose.
    static var quiet: Logger {
        var logger = Logger(label: "mdm.redis.test")
        logger.logLevel = .error
        return logger
    }
}
