import MDMBus
import NIOCore
import Testing

/// Connection and pool behaviour against a scripted stand-in server: pipelining, protocol
/// errors, timeouts, cancellation.
@Suite
struct RedisConnectionTests {
    @Test
    func repliesMatchPipelinedCommandsInOrder() async throws {
        let server = try await ScriptedRedisServer.start { command in
            command.first == "ECHO" ? "$\(command[1].utf8.count)\r\n\(command[1])\r\n" : "+PONG\r\n"
        }
        let connection = try await RedisConnection.connect(configuration: server.configuration)
        let replies = try await withThrowingTaskGroup(of: (Int, String?).self) { group in
            for index in 0..<500 {
                group.addTask { (index, try await connection.send(["ECHO", .string("message-\(index)")]).string) }
            }
            return try await group.reduce(into: [:]) { $0[$1.0] = $1.1 }
        }
        #expect(replies.count == 500)
        #expect(replies.allSatisfy { $0.value == "message-\($0.key)" })
        await connection.close()
        await server.close()
    }

    @Test
    func malformedReplyFailsWaitingCommandsAndClosesTheConnection() async throws {
        let server = try await ScriptedRedisServer.start { command in
            command.first == "GARBLE" ? "%not resp\r\n" : "+PONG\r\n"
        }
        let connection = try await RedisConnection.connect(configuration: server.configuration)
        let error = await #expect(throws: RedisError.self) { try await connection.send(["GARBLE"]) }
        guard case .protocolViolation(let detail) = error else {
            Issue.record("expected a protocol violation, got \(String(describing: error))")
            return
        }
        #expect(detail.contains("0x25"))
        try await connection.closeFuture.get()
        #expect(!connection.isActive)
        await #expect(throws: RedisError.protocolViolation(detail)) { try await connection.send(["PING"]) }
        await server.close()
    }

    @Test
    func errorRepliesAreThrownAsServerErrors() async throws {
        let server = try await ScriptedRedisServer.start { command in
            command.first == "BAD" ? "-ERR unknown command 'BAD'\r\n" : "+PONG\r\n"
        }
        let connection = try await RedisConnection.connect(configuration: server.configuration)
        await #expect(throws: RedisError.server("ERR unknown command 'BAD'")) { try await connection.send(["BAD"]) }
        #expect(try await connection.ping() == "PONG")
        await connection.close()
        await server.close()
    }

    /// A missing reply holds up every later one, so a timeout closes the connection and fails
    /// the commands behind it.
    @Test
    func timedOutCommandClosesTheConnection() async throws {
        let server = try await ScriptedRedisServer.start { command in command.first == "PING" ? "+PONG\r\n" : nil }
        let connection = try await RedisConnection.connect(configuration: server.configuration)
        let behind = Task { try await connection.send(["GET", "x"], timeout: .seconds(30)) }
        await #expect(throws: RedisError.commandTimedOut(command: "SLOW", after: .milliseconds(50))) {
            try await connection.send(["SLOW"], timeout: .milliseconds(50))
        }
        await #expect(throws: RedisError.connectionClosed) { try await behind.value }
        try await connection.closeFuture.get()
        #expect(connection.outstandingReplies == 0)
        await server.close()
    }

    @Test
    func poolReplacesAConnectionClosedByATimeout() async throws {
        let server = try await ScriptedRedisServer.start { command in command.first == "PING" ? "+PONG\r\n" : nil }
        var configuration = server.configuration
        configuration.poolSize = 1
        let client = try RedisClient(configuration: configuration)
        await #expect(throws: RedisError.commandTimedOut(command: "SLOW", after: .milliseconds(50))) {
            try await client.send(["SLOW"], timeout: .milliseconds(50))
        }
        #expect(try await client.ping() == "PONG")
        await client.shutdown()
        await server.close()
    }

    /// The reply to a command whose caller was cancelled still arrives; it is matched to that
    /// command and dropped, and the next command gets its own reply.
    @Test
    func lateReplyToACancelledCommandIsDiscarded() async throws {
        let server = try await ScriptedRedisServer.start { command in
            switch command.first {
            case "HANG": nil
            // Answers the withheld HANG first, then this command, as Redis would in order.
            case "FAST": "+hang-reply\r\n+fast-reply\r\n"
            default: "+PONG\r\n"
            }
        }
        let connection = try await RedisConnection.connect(configuration: server.configuration)
        let waiting = Task { try await connection.send(["HANG"], timeout: nil) }
        waiting.cancel()
        await #expect(throws: CancellationError.self) { try await waiting.value }
        // Redis still owes the reply; the connection keeps counting it.
        #expect(connection.outstandingReplies == 1)
        #expect(try await connection.send(["FAST"]).string == "fast-reply")
        #expect(connection.outstandingReplies == 0)
        await connection.close()
        await server.close()
    }

    @Test
    func silentServerFailsTheConnectWithinTheConnectTimeout() async throws {
        let server = try await ScriptedRedisServer.start { _ in nil }
        var configuration = server.configuration
        configuration.connectTimeout = .seconds(1)
        let started = ContinuousClock.now
        let error = await #expect(throws: RedisError.self) {
            try await RedisConnection.connect(configuration: configuration)
        }
        // The server never answers: only the connect timeout ends the wait. The bound is loose
        // because CI runs every suite at once on two cores.
        #expect(ContinuousClock.now - started < .seconds(30))
        guard case .connectFailed(_, let reason) = error else {
            Issue.record("expected connectFailed, got \(String(describing: error))")
            return
        }
        // Normally the PING goes unanswered; on a starved machine the TCP connect itself may
        // be what runs out of time.
        #expect(reason.contains("PING") || reason.contains("timeout"))
        await server.close()
    }
}
