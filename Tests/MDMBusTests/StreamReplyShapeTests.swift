import MDMBus
import Testing

/// Reply shapes of Redis versions other than the one installed, played by a scripted server.
@Suite
struct StreamReplyShapeTests {
    /// Redis 6.2 answers XAUTOCLAIM with two elements and reports a claimed entry that no
    /// longer exists as a bare null.
    @Test
    func xautoclaimAcceptsTheRedis62Shape() async throws {
        let reply = "*2\r\n$3\r\n0-0\r\n*2\r\n*2\r\n$3\r\n1-1\r\n*2\r\n$1\r\nn\r\n$1\r\n1\r\n$-1\r\n"
        try await withScriptedConnection(answering: ["XAUTOCLAIM": reply]) { connection in
            let claimed = try await connection.xautoclaim(stream: "s", group: "g", consumer: "c", minIdle: .seconds(1))
            #expect(claimed.nextStart == "0-0")
            #expect(claimed.entries.map(\.id) == ["1-1"])
            #expect(claimed.entries.first?.string("n") == "1")
            #expect(claimed.deletedIDs.isEmpty)
        }
    }

    /// Redis 6.2's XINFO GROUPS has neither `entries-read` nor `lag`.
    @Test
    func groupInfoWithoutLagParses() async throws {
        let reply =
            "*1\r\n*8\r\n$4\r\nname\r\n$4\r\npush\r\n$9\r\nconsumers\r\n:2\r\n$7\r\npending\r\n:5\r\n"
            + "$17\r\nlast-delivered-id\r\n$3\r\n9-0\r\n"
        try await withScriptedConnection(answering: ["XINFO": reply]) { connection in
            let groups = try await connection.xinfoGroups(stream: "s")
            #expect(groups == [StreamGroupInfo(name: "push", consumers: 2, pending: 5, lastDeliveredID: "9-0")])
        }
    }

    @Test
    func replyOfTheWrongShapeIsAnUnexpectedReply() async throws {
        try await withScriptedConnection(answering: ["XADD": ":1\r\n", "XREADGROUP": "*1\r\n:5\r\n"]) { connection in
            await #expect(throws: RedisError.unexpectedReply(command: "XADD", reply: ":1")) {
                try await connection.xadd(stream: "s", fields: [("n", "1")])
            }
            await #expect(throws: RedisError.unexpectedReply(command: "XREADGROUP", reply: "[:5]")) {
                try await connection.xreadgroup(group: "g", consumer: "c", stream: "s")
            }
        }
    }

    private func withScriptedConnection(
        answering replies: [String: String],
        _ body: (RedisConnection) async throws -> Void
    ) async throws {
        let server = try await ScriptedRedisServer.start { command in
            command.first.flatMap { replies[$0] } ?? "+PONG\r\n"
        }
        let connection = try await RedisConnection.connect(configuration: server.configuration)
        do {
            try await body(connection)
        } catch {
            await connection.close()
            await server.close()
            throw error
        }
        await connection.close()
        await server.close()
    }
}
