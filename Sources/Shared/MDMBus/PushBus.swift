import Foundation
import Logging
import NIOCore

/// A request to wake enrollments through APNs (DESIGN.md flow 4).
package struct PushRequest: Sendable, Equatable {
    /// Correlates outcomes with the request (an API caller waiting for results).
    package var requestID: String
    package var enrollmentIDs: [String]
    /// Where outcomes go when a caller waits for them; `nil` for fire-and-forget pushes.
    package var replyTo: String?

    package init(requestID: String = UUID().uuidString, enrollmentIDs: [String], replyTo: String? = nil) {
        self.requestID = requestID
        self.enrollmentIDs = enrollmentIDs
        self.replyTo = replyTo
    }
}

/// A push request handed to one consumer; acknowledge `receipt` once it is handled.
package struct ReceivedPushRequest: Sendable, Equatable {
    package var request: PushRequest
    package var receipt: String
}

/// Push fan-out between the roles that ask for pushes and the PushService replicas that send
/// them. Every request is handled by one consumer; a request whose consumer died before
/// acknowledging it is reclaimed by another.
package protocol PushBus: Sendable {
    /// Creates what consumers need (the consumer group); idempotent.
    func prepare() async throws
    func publish(_ requests: [PushRequest]) async throws
    /// Up to `count` new requests for `consumer`, waiting up to `block` for the first.
    func receive(consumer: String, count: Int, block: Duration) async throws -> [ReceivedPushRequest]
    /// Requests other consumers received and have not acknowledged for `minIdle`.
    func reclaim(consumer: String, minIdle: Duration, count: Int) async throws -> [ReceivedPushRequest]
    func acknowledge(_ receipts: [String]) async throws
    /// Tells the bus `consumer` is still working on `receipts`, so nobody reclaims them.
    func keepAlive(_ receipts: [String], consumer: String) async throws
    /// Sends the outcomes of a request to the reply key its publisher named.
    func reply(_ reply: PushReply, to key: String) async throws
    /// Replies that arrived at `key` (one reader per key), waiting up to `block` for the first.
    func receiveReplies(at key: String, block: Duration) async throws -> [PushReply]
    /// Entries delivered to consumers but not acknowledged, and entries not yet delivered.
    func backlog() async throws -> (pending: Int, lag: Int)
}

/// `PushBus` on a Redis stream with a consumer group (XADD, XREADGROUP, XAUTOCLAIM, XACK).
package struct RedisPushBus: PushBus {
    package static let defaultStream = "mdm:push:requests"
    package static let defaultGroup = "mdm:push:workers"

    private let client: RedisClient
    package let stream: String
    package let group: String
    /// The stream is trimmed (approximately) to this many entries.
    private let maxLength: Int
    private let logger: Logger

    package init(
        client: RedisClient,
        stream: String = RedisPushBus.defaultStream,
        group: String = RedisPushBus.defaultGroup,
        maxLength: Int = 1_000_000,
        logger: Logger
    ) {
        self.client = client
        self.stream = stream
        self.group = group
        self.maxLength = maxLength
        self.logger = logger
    }

    /// Creates the stream and the consumer group when missing (from the stream's start, so
    /// requests published before the first consumer are not skipped).
    package func prepare() async throws {
        _ = try await client.xgroupCreate(stream: stream, group: group, startID: "0")
    }

    package func publish(_ requests: [PushRequest]) async throws {
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            for request in requests {
                tasks.addTask {
                    _ = try await client.xadd(
                        stream: stream,
                        fields: Self.fields(of: request),
                        approximateMaxLength: maxLength
                    )
                }
            }
            try await tasks.waitForAll()
        }
    }

    package func receive(consumer: String, count: Int, block: Duration) async throws -> [ReceivedPushRequest] {
        let entries = try await client.xreadgroup(
            group: group,
            consumer: consumer,
            stream: stream,
            count: count,
            block: block
        )
        return try await decode(entries)
    }

    package func reclaim(consumer: String, minIdle: Duration, count: Int) async throws -> [ReceivedPushRequest] {
        let claimed = try await client.xautoclaim(
            stream: stream,
            group: group,
            consumer: consumer,
            minIdle: minIdle,
            count: count
        )
        return try await decode(claimed.entries)
    }

    package func acknowledge(_ receipts: [String]) async throws {
        guard !receipts.isEmpty else { return }
        _ = try await client.xack(stream: stream, group: group, ids: receipts)
    }

    package func keepAlive(_ receipts: [String], consumer: String) async throws {
        try await client.xclaimJustID(stream: stream, group: group, consumer: consumer, minIdle: .zero, ids: receipts)
    }

    package func reply(_ reply: PushReply, to key: String) async throws {
        let body = try JSONEncoder().encode(reply)
        try await client.pushExpiring(ByteBuffer(bytes: body), to: key, expiry: Self.replyExpiry)
    }

    /// Replies nobody reads (their API replica died) disappear after this.
    static let replyExpiry: Duration = .seconds(300)

    package func receiveReplies(at key: String, block: Duration) async throws -> [PushReply] {
        let values = try await client.popList(key, count: 256, block: block)
        let decoder = JSONDecoder()
        return values.compactMap { value in
            do {
                return try decoder.decode(PushReply.self, from: Data(value.readableBytesView))
            } catch {
                logger.error("dropping a malformed push reply", metadata: ["key": "\(key)", "error": "\(error)"])
                return nil
            }
        }
    }

    package func backlog() async throws -> (pending: Int, lag: Int) {
        let groups = try await client.xinfoGroups(stream: stream)
        guard let info = groups.first(where: { $0.name == group }) else { return (0, 0) }
        return (info.pending, info.lag ?? 0)
    }

    static func fields(of request: PushRequest) -> [(name: String, value: RESPArgument)] {
        var fields: [(name: String, value: RESPArgument)] = [
            ("request_id", .string(request.requestID)),
            // Newline-separated: enrollment IDs never contain one (they come from plist strings
            // that are UDIDs, user GUIDs and short names).
            ("ids", .string(request.enrollmentIDs.joined(separator: "\n"))),
        ]
        if let replyTo = request.replyTo { fields.append(("reply_to", .string(replyTo))) }
        return fields
    }

    /// Entries that are not push requests cannot be handled by anyone: they are acknowledged
    /// and dropped with a log line instead of being redelivered forever.
    private func decode(_ entries: [StreamEntry]) async throws -> [ReceivedPushRequest] {
        var received: [ReceivedPushRequest] = []
        var malformed: [String] = []
        for entry in entries {
            guard let requestID = entry.string("request_id"), let ids = entry.string("ids") else {
                malformed.append(entry.id)
                continue
            }
            let request = PushRequest(
                requestID: requestID,
                enrollmentIDs: ids.split(separator: "\n").map(String.init),
                replyTo: entry.string("reply_to")
            )
            received.append(ReceivedPushRequest(request: request, receipt: entry.id))
        }
        if !malformed.isEmpty {
            logger.error("dropping malformed push requests", metadata: ["ids": "\(malformed)"])
            try await acknowledge(malformed)
        }
        return received
    }
}
