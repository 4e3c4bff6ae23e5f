import Foundation
import MDMServerSupport
import MDMStorage
import NIOCore

/// One event in `GET /v1/webhook/events`.
struct WebhookEventListing: Encodable, Equatable, Sendable {
    var id: Int64
    var eventID: String
    var enrollmentID: String
    var topic: String
    var state: String
    var attempts: Int
    var lastError: String?
    var createdAt: String
    var updatedAt: String

    enum CodingKeys: String, CodingKey {
        case id
        case eventID = "event_id"
        case enrollmentID = "enrollment_id"
        case topic, state, attempts
        case lastError = "last_error"
        case createdAt = "created_at"
        case updatedAt = "updated_at"
    }

    init(_ summary: WebhookEventSummary) {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        id = summary.id
        eventID = summary.eventID.uuidString.lowercased()
        enrollmentID = summary.enrollmentID
        topic = summary.topic
        state = summary.state.rawValue
        attempts = summary.attempts
        lastError = summary.lastError
        createdAt = formatter.string(from: summary.createdAt)
        updatedAt = formatter.string(from: summary.updatedAt)
    }
}

/// The reply of `GET /v1/webhook/events`: a page, and where the next one starts.
struct WebhookEventPage: Encodable, Equatable, Sendable {
    var events: [WebhookEventListing]
    /// Pass as `after` for the next page; absent on the last page.
    var nextAfter: Int64?

    enum CodingKeys: String, CodingKey {
        case events
        case nextAfter = "next_after"
    }
}

/// The body of `POST /v1/webhook/events/retry`; empty or `{}` retries every dead letter.
struct WebhookRetryRequest: Decodable, Sendable {
    var ids: [Int64]?
    var enrollmentID: String?

    enum CodingKeys: String, CodingKey {
        case ids
        case enrollmentID = "enrollment_id"
    }
}

/// What operators may see and do with the webhook outbox, free of HTTP and SQL.
struct WebhookEventHandler: Sendable {
    var store: any WebhookEventStore

    static let defaultLimit = 100
    static let maxLimit = 1000

    func list(state: String?, enrollmentID: String?, after: String?, limit: String?) async throws -> WebhookEventPage {
        let state = try Self.state(state)
        let afterID = try Self.integer(after, name: "after", default: 0, range: 0...Int64.max)
        let limit = Int(try Self.integer(limit, name: "limit", default: Int64(Self.defaultLimit), range: 1...1000))
        let events = try await store.listEvents(
            state: state,
            enrollmentID: enrollmentID.flatMap { $0.isEmpty ? nil : $0 },
            afterID: afterID,
            limit: limit
        )
        return WebhookEventPage(
            events: events.map(WebhookEventListing.init),
            nextAfter: events.count == limit ? events.last?.id : nil
        )
    }

    func body(id: String) async throws -> ByteBuffer {
        guard let id = Int64(id) else { throw RequestFailure.badRequest("event id must be an integer") }
        guard let body = try await store.fetchEventBody(id: id) else {
            throw RequestFailure.notFound("no webhook event \(id)")
        }
        return body
    }

    func retry(_ request: WebhookRetryRequest) async throws -> Int {
        switch (request.ids, request.enrollmentID) {
        case (let ids?, nil):
            guard !ids.isEmpty else { throw RequestFailure.badRequest("ids is empty") }
            return try await store.retryDead(.ids(ids))
        case (nil, let enrollmentID?):
            return try await store.retryDead(.enrollment(enrollmentID))
        case (nil, nil):
            return try await store.retryDead(.all)
        case (.some, .some):
            throw RequestFailure.badRequest("give ids or enrollment_id, not both")
        }
    }

    private static func state(_ raw: String?) throws -> WebhookEventState {
        guard let raw, !raw.isEmpty else { return .dead }
        guard let state = WebhookEventState(rawValue: raw) else {
            throw RequestFailure.badRequest("state must be pending, delivered or dead")
        }
        return state
    }

    private static func integer(_ raw: String?, name: String, default value: Int64, range: ClosedRange<Int64>)
        throws -> Int64
    {
        guard let raw, !raw.isEmpty else { return value }
        guard let parsed = Int64(raw), range.contains(parsed) else {
            throw RequestFailure.badRequest("\(name) must be an integer in \(range.lowerBound)…\(range.upperBound)")
        }
        return parsed
    }
}
