import Logging
import MDMBus
import MDMTestSupport
import Testing

/// The push bus on a real Redis stream: each test uses a stream and group of its own.
@Suite(.enabled(if: TestRedis.isEnabled, "set MDM_TEST_REDIS_URL or run deploy/local/test"))
struct RedisPushBusTests {
    @Test
    func publishedRequestsAreReceivedOnceAndAcknowledged() async throws {
        try await withBus { bus in
            let requests = [
                PushRequest(enrollmentIDs: ["UDID-1"]),
                PushRequest(enrollmentIDs: ["UDID-2", "UDID-2:USER-9"], replyTo: "mdm:push:replies:api-1"),
                PushRequest(enrollmentIDs: ["ENR-3"]),
            ]
            try await bus.publish(requests)
            let received = try await bus.receive(consumer: "push-1", count: 10, block: .milliseconds(500))
            #expect(Set(received.map(\.request.requestID)) == Set(requests.map(\.requestID)))
            for request in requests {
                #expect(received.first { $0.request.requestID == request.requestID }?.request == request)
            }
            #expect(try await bus.receive(consumer: "push-2", count: 10, block: .milliseconds(50)).isEmpty)
            try await bus.acknowledge(received.map(\.receipt))
            #expect(try await bus.reclaim(consumer: "push-2", minIdle: .zero, count: 10).isEmpty)
        }
    }

    @Test
    func replicasShareTheStreamWithoutDuplicates() async throws {
        try await withBus { bus in
            let requests = (0..<60).map { PushRequest(enrollmentIDs: ["DEVICE-\($0)"]) }
            try await bus.publish(requests)
            var seen: [String: String] = [:]
            var turn = 0
            while seen.count < requests.count {
                let consumer = "push-\(turn % 2)"
                turn += 1
                let batch = try await bus.receive(consumer: consumer, count: 7, block: .milliseconds(200))
                for item in batch {
                    #expect(seen[item.request.requestID] == nil, "delivered twice")
                    seen[item.request.requestID] = consumer
                }
                try await bus.acknowledge(batch.map(\.receipt))
                #expect(turn < 40, "the stream ran dry before every request arrived")
                if turn >= 40 { break }
            }
            #expect(Set(seen.keys) == Set(requests.map(\.requestID)))
            #expect(Set(seen.values) == ["push-0", "push-1"])
        }
    }

    @Test
    func requestsOfAConsumerThatDiedAreReclaimedByAnother() async throws {
        try await withBus { bus in
            let requests = (0..<5).map { PushRequest(enrollmentIDs: ["DEVICE-\($0)"]) }
            try await bus.publish(requests)
            let taken = try await bus.receive(consumer: "push-dead", count: 10, block: .milliseconds(500))
            #expect(taken.count == 5)
            // push-dead never acknowledges; with no idle threshold the survivor takes all of it.
            let reclaimed = try await bus.reclaim(consumer: "push-alive", minIdle: .zero, count: 10)
            #expect(Set(reclaimed.map(\.receipt)) == Set(taken.map(\.receipt)))
            #expect(reclaimed.map(\.request) == taken.map(\.request))
            try await bus.acknowledge(reclaimed.map(\.receipt))
            #expect(try await bus.reclaim(consumer: "push-alive", minIdle: .zero, count: 10).isEmpty)
        }
    }

    @Test
    func aRecentlyReadRequestIsNotReclaimedBeforeItsIdleTime() async throws {
        try await withBus { bus in
            try await bus.publish([PushRequest(enrollmentIDs: ["DEVICE-1"])])
            #expect(try await bus.receive(consumer: "push-1", count: 1, block: .milliseconds(500)).count == 1)
            #expect(try await bus.reclaim(consumer: "push-2", minIdle: .seconds(60), count: 10).isEmpty)
        }
    }

    @Test
    func repliesReachTheirKeyInOrderAndExpire() async throws {
        try await withBus { bus in
            let key = TestRedis.keyspace("replies").key("api-1")
            #expect(try await bus.receiveReplies(at: key, block: .milliseconds(50)).isEmpty)
            let replies = [
                PushReply(requestID: "REQ-1", results: ["A": PushResult(apnsID: "APNS-1")]),
                PushReply(requestID: "REQ-1", results: ["B": PushResult(error: "no push info for enrollment")]),
                PushReply(requestID: "REQ-2", results: [:]),
            ]
            for reply in replies { try await bus.reply(reply, to: key) }
            var received: [PushReply] = []
            while received.count < replies.count {
                let batch = try await bus.receiveReplies(at: key, block: .seconds(5))
                #expect(!batch.isEmpty, "replies went missing")
                if batch.isEmpty { break }
                received += batch
            }
            #expect(received == replies)
        }
    }

    @Test
    func aWaitingReplyReaderGetsALaterReply() async throws {
        try await withBus { bus in
            let key = TestRedis.keyspace("replies").key("api-2")
            async let waited = bus.receiveReplies(at: key, block: .seconds(10))
            try await bus.reply(PushReply(requestID: "LATE", results: [:]), to: key)
            #expect(try await waited.map(\.requestID) == ["LATE"])
        }
    }

    private func withBus(_ body: (RedisPushBus) async throws -> Void) async throws {
        let client = try RedisClient(url: try TestRedis.url())
        let keys = TestRedis.keyspace("pushbus")
        var logger = Logger(label: "test.pushbus")
        logger.logLevel = .critical
        let bus = RedisPushBus(client: client, stream: keys.key("requests"), group: "workers", logger: logger)
        do {
            try await bus.prepare()
            try await body(bus)
            _ = try await client.del([keys.key("requests")])
        } catch {
            await client.shutdown()
            throw error
        }
        await client.shutdown()
    }
}
