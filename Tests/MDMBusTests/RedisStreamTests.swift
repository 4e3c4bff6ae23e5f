import Foundation
import MDMBus
import MDMTestSupport
import NIOCore
import Testing

/// Stream commands against the shared test server; every test uses keys of its own.
@Suite(.enabled(if: TestRedis.isEnabled, "set MDM_TEST_REDIS_URL or run deploy/local/test"))
struct RedisStreamTests {
    @Test
    func pingAnswersPong() async throws {
        try await withClient { client, _ in
            let reply = try await client.ping()
            #expect(reply == "PONG")
        }
    }

    @Test
    func xaddXreadgroupXackRoundTrip() async throws {
        try await withClient { client, keys in
            let stream = keys.key("requests")
            #expect(try await client.xgroupCreate(stream: stream, group: "push", startID: "0"))
            let payload = ByteBuffer(bytes: [0x00, 0x01, 0xFE, 0xFF])
            let id = try await client.xadd(stream: stream, fields: [("udid", "ABC-123"), ("payload", .bytes(payload))])
            let entries = try await client.xreadgroup(group: "push", consumer: "replica-1", stream: stream, count: 10)
            let expected = StreamEntry(
                id: id,
                fields: [
                    StreamField(name: "udid", value: ByteBuffer(string: "ABC-123")),
                    StreamField(name: "payload", value: payload),
                ]
            )
            #expect(entries == [expected])
            #expect(entries.first?.string("udid") == "ABC-123")
            #expect(try await client.xpendingSummary(stream: stream, group: "push").count == 1)
            #expect(try await client.xack(stream: stream, group: "push", ids: [id]) == 1)
            #expect(try await client.xack(stream: stream, group: "push", ids: [id]) == 0)
            #expect(try await client.xpendingSummary(stream: stream, group: "push").count == 0)
            #expect(try await client.xreadgroup(group: "push", consumer: "replica-1", stream: stream).isEmpty)
        }
    }

    @Test
    func consumersOfOneGroupGetDistinctEntries() async throws {
        try await withClient { client, keys in
            let stream = keys.key("requests")
            try await client.xgroupCreate(stream: stream, group: "push")
            var added: Set<String> = []
            for index in 0..<10 {
                added.insert(try await client.xadd(stream: stream, fields: [("n", .integer(index))]))
            }
            let first = try await client.xreadgroup(group: "push", consumer: "a", stream: stream, count: 4)
            let second = try await client.xreadgroup(group: "push", consumer: "b", stream: stream, count: 100)
            #expect(first.count == 4)
            #expect(second.count == 6)
            #expect(Set(first.map(\.id)).isDisjoint(with: second.map(\.id)))
            #expect(Set(first.map(\.id)).union(second.map(\.id)) == added)
            let summary = try await client.xpendingSummary(stream: stream, group: "push")
            #expect(summary.count == 10)
            #expect(Set(summary.consumers) == [.init(name: "a", pending: 4), .init(name: "b", pending: 6)])
        }
    }

    @Test
    func xautoclaimReclaimsEntriesOfAConsumerThatNeverAcknowledged() async throws {
        try await withClient { client, keys in
            let stream = keys.key("requests")
            try await client.xgroupCreate(stream: stream, group: "push")
            let ids = [
                try await client.xadd(stream: stream, fields: [("n", "1")]),
                try await client.xadd(stream: stream, fields: [("n", "2")]),
            ]
            // The dead replica read both entries and never acknowledged them.
            #expect(try await client.xreadgroup(group: "push", consumer: "dead", stream: stream).count == 2)
            let tooSoon = try await client.xautoclaim(
                stream: stream, group: "push", consumer: "alive", minIdle: .seconds(3600))
            #expect(tooSoon.entries.isEmpty)
            let claimed = try await client.xautoclaim(
                stream: stream, group: "push", consumer: "alive", minIdle: .zero, count: 10)
            #expect(claimed.entries.map(\.id) == ids)
            #expect(claimed.nextStart == "0-0")
            #expect(claimed.deletedIDs.isEmpty)
            let summary = try await client.xpendingSummary(stream: stream, group: "push")
            #expect(summary.consumers == [.init(name: "alive", pending: 2)])
            #expect(try await client.xack(stream: stream, group: "push", ids: claimed.entries.map(\.id)) == 2)
        }
    }

    @Test
    func entriesDeletedWhilePendingAreReportedNotReturned() async throws {
        try await withClient { client, keys in
            let stream = keys.key("requests")
            try await client.xgroupCreate(stream: stream, group: "push")
            let kept = try await client.xadd(stream: stream, fields: [("n", "kept")])
            let deleted = try await client.xadd(stream: stream, fields: [("n", "deleted")])
            _ = try await client.xreadgroup(group: "push", consumer: "dead", stream: stream)
            _ = try await client.send(["XDEL", .string(stream), .string(deleted)])
            // Reading its own history, a consumer sees the deleted entry without fields.
            let history = try await client.xreadgroup(group: "push", consumer: "dead", stream: stream, id: "0")
            #expect(history.map(\.id) == [kept, deleted])
            #expect(history.map(\.isDeleted) == [false, true])
            let claimed = try await client.xautoclaim(stream: stream, group: "push", consumer: "alive", minIdle: .zero)
            #expect(claimed.entries.map(\.id) == [kept])
            #expect(claimed.deletedIDs == [deleted])
        }
    }

    @Test
    func creatingAnExistingGroupIsNotAnError() async throws {
        try await withClient { client, keys in
            let stream = keys.key("requests")
            let created = try await client.xgroupCreate(stream: stream, group: "push")
            let createdAgain = try await client.xgroupCreate(stream: stream, group: "push")
            #expect(created)
            #expect(!createdAgain)
            await #expect(throws: RedisError.self) {
                try await client.xgroupCreate(stream: keys.key("missing"), group: "push", makeStream: false)
            }
        }
    }

    @Test
    func blockingReadReturnsNothingWhenTheBlockExpires() async throws {
        try await withClient { client, keys in
            let stream = keys.key("requests")
            try await client.xgroupCreate(stream: stream, group: "push")
            let entries = try await client.xreadgroup(
                group: "push", consumer: "a", stream: stream, count: 10, block: .milliseconds(50))
            #expect(entries.isEmpty)
        }
    }

    /// With a one-connection pool, a read blocked on the server must not hold up other
    /// commands: it runs on a dedicated connection.
    @Test
    func blockingReadDoesNotStallOtherCommands() async throws {
        try await withClient(poolSize: 1) { client, keys in
            let stream = keys.key("requests")
            try await client.xgroupCreate(stream: stream, group: "push")
            let reader = Task {
                try await client.xreadgroup(group: "push", consumer: "a", stream: stream, block: .seconds(30))
            }
            for _ in 0..<20 {
                #expect(try await client.ping() == "PONG")
            }
            let id = try await client.xadd(stream: stream, fields: [("n", "1")])
            #expect(try await reader.value.map(\.id) == [id])
        }
    }

    @Test
    func errorRepliesAreThrownAsServerErrors() async throws {
        try await withClient { client, keys in
            let key = keys.key("plain")
            _ = try await client.send(["SET", .string(key), "value"])
            let error = await #expect(throws: RedisError.self) {
                try await client.xadd(stream: key, fields: [("n", "1")])
            }
            guard case .server(let message) = error else {
                Issue.record("expected a server error, got \(String(describing: error))")
                return
            }
            #expect(message.hasPrefix("WRONGTYPE"))
            #expect(try await client.del([key, keys.key("absent")]) == 1)
        }
    }

    @Test
    func groupInfoReportsPendingAndLag() async throws {
        try await withClient { client, keys in
            let stream = keys.key("requests")
            try await client.xgroupCreate(stream: stream, group: "push", startID: "0")
            for index in 0..<5 {
                try await client.xadd(stream: stream, fields: [("n", .integer(index))])
            }
            _ = try await client.xreadgroup(group: "push", consumer: "a", stream: stream, count: 2)
            let groups = try await client.xinfoGroups(stream: stream)
            #expect(groups.count == 1)
            let group = try #require(groups.first)
            #expect(group.name == "push")
            #expect(group.consumers == 1)
            #expect(group.pending == 2)
            #expect(group.lag == 3)
            #expect(group.entriesRead == 2)
            #expect(try await client.xlen(stream: stream) == 5)
            #expect(try await client.xlen(stream: keys.key("absent")) == 0)
        }
    }

    @Test
    func approximateMaxLengthTrimsTheStream() async throws {
        try await withClient { client, keys in
            let stream = keys.key("capped")
            for index in 0..<1000 {
                try await client.xadd(stream: stream, fields: [("n", .integer(index))], approximateMaxLength: 100)
            }
            let length = try await client.xlen(stream: stream)
            #expect(length >= 100 && length < 1000)
        }
    }

    @Test
    func tenThousandConcurrentXaddsAllSucceedWithDistinctIDs() async throws {
        try await withClient { client, keys in
            let stream = keys.key("requests")
            let ids = try await withThrowingTaskGroup(of: [String].self) { group in
                for task in 0..<50 {
                    group.addTask {
                        var ids: [String] = []
                        for index in 0..<200 {
                            ids.append(
                                try await client.xadd(
                                    stream: stream, fields: [("task", .integer(task)), ("n", .integer(index))])
                            )
                        }
                        return ids
                    }
                }
                return try await group.reduce(into: []) { $0 += $1 }
            }
            #expect(ids.count == 10_000)
            #expect(Set(ids).count == 10_000)
            #expect(try await client.xlen(stream: stream) == 10_000)
        }
    }

    @Test
    func databaseFromTheURLIsSelected() async throws {
        let keys = TestRedis.keyspace("db")
        let key = keys.key("marker")
        let database = try RedisClient(url: try TestRedis.url().replacingOccurrences(of: "?", with: "/3?"))
        let defaultDatabase = try RedisClient(url: try TestRedis.url())
        _ = try await database.send(["SET", .string(key), "in-3"])
        #expect(try await defaultDatabase.send(["GET", .string(key)]).isNull)
        #expect(try await database.send(["GET", .string(key)]).string == "in-3")
        try await database.del([key])
        await database.shutdown()
        await defaultDatabase.shutdown()
    }

    private func withClient(
        poolSize: Int = 4,
        _ body: (RedisClient, TestRedisKeyspace) async throws -> Void
    ) async throws {
        var configuration = try RedisConfiguration(url: try TestRedis.url())
        configuration.poolSize = poolSize
        let client = try RedisClient(configuration: configuration)
        let keys = TestRedis.keyspace("stream")
        do {
            try await body(client, keys)
            try await deleteKeys(startingWith: keys.prefix, client: client)
        } catch {
            await client.shutdown()
            throw error
        }
        await client.shutdown()
    }

    /// Keeps a long-lived development server from filling up with test streams.
    private func deleteKeys(startingWith prefix: String, client: RedisClient) async throws {
        var cursor = "0"
        repeat {
            let reply = try await client.send(["SCAN", .string(cursor), "MATCH", .string(prefix + "*"), "COUNT", 1000])
            guard let parts = reply.array, parts.count == 2, let next = parts[0].string else {
                Issue.record("unexpected SCAN reply \(reply)")
                return
            }
            try await client.del(parts[1].array?.compactMap(\.string) ?? [])
            cursor = next
        } while cursor != "0"
    }
}
