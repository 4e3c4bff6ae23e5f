import Foundation
import NIOCore

/// One enrollment's push outcome as the API reports it: the apns-id, or why there is none.
package struct PushResult: Sendable, Equatable, Codable {
    package var apnsID: String?
    package var error: String?

    package init(apnsID: String? = nil, error: String? = nil) {
        self.apnsID = apnsID
        self.error = error
    }

    enum CodingKeys: String, CodingKey {
        case apnsID = "apns_id"
        case error
    }
}

/// The outcomes of one push request, sent back to the API replica that waits for them.
package struct PushReply: Sendable, Equatable, Codable {
    package var requestID: String
    package var results: [String: PushResult]

    package init(requestID: String, results: [String: PushResult]) {
        self.requestID = requestID
        self.results = results
    }

    enum CodingKeys: String, CodingKey {
        case requestID = "request_id"
        case results
    }
}

extension RedisCommandSending {
    /// `RPUSH key value` then `EXPIRE key seconds`: the list outlives a reader that went away
    /// only by `expiry`.
    package func pushExpiring(_ value: ByteBuffer, to key: String, expiry: Duration) async throws {
        _ = try await send(["RPUSH", .string(key), .bytes(value)])
        _ = try await send(["EXPIRE", .string(key), .integer(max(1, Int(expiry.components.seconds)))])
    }

    /// `BLPOP key timeout`, then `LPOP key count` for whatever else is already there: up to
    /// `count` values, waiting up to `block` for the first. Empty when none arrived in time.
    package func popList(_ key: String, count: Int, block: Duration) async throws -> [ByteBuffer] {
        let seconds = Double(block.redisMilliseconds) / 1000
        let first = try await sendBlocking(["BLPOP", .string(key), .string(String(seconds))], block: block)
        guard let pair = first.array, pair.count == 2, let value = pair[1].bytes else { return [] }
        guard count > 1 else { return [value] }
        let more = try await send(["LPOP", .string(key), .integer(count - 1)])
        return [value] + (more.array ?? []).compactMap(\.bytes)
    }
}
