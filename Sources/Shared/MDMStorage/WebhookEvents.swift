import Foundation
import NIOCore

// The webhook outbox contract. Events are recorded by the enrollment and queue stores in the
// statement that makes the change they describe; `WebhookEventStore` is the delivery side.

/// A rendered webhook event, recorded with the state change it describes.
package struct WebhookEventRecord: Sendable, Equatable {
    package var eventID: UUID
    /// The enrollment whose events are delivered in order (the channel the message came on).
    package var enrollmentID: String
    /// `mdm.Authenticate`, `mdm.Connect`, …
    package var topic: String
    /// The JSON body as it will be sent. For a `TokenUpdate` the store writes the enrollment's
    /// new tally between `body` and `bodyAfterTally`: the tally is known only inside the
    /// statement that increments it.
    package var body: [UInt8]
    package var bodyAfterTally: [UInt8]?

    package init(eventID: UUID, enrollmentID: String, topic: String, body: [UInt8], bodyAfterTally: [UInt8]? = nil) {
        self.eventID = eventID
        self.enrollmentID = enrollmentID
        self.topic = topic
        self.body = body
        self.bodyAfterTally = bodyAfterTally
    }
}

/// Where an event is in its life.
package enum WebhookEventState: String, Sendable, CaseIterable {
    case pending
    case delivered
    /// Given up on (too old or too many attempts): a dead letter operators can list and retry.
    case dead
}

/// The head event of one enrollment, leased to one worker for one delivery attempt.
package struct WebhookDelivery: Sendable, Equatable {
    package var id: Int64
    package var eventID: UUID
    package var enrollmentID: String
    package var topic: String
    package var body: ByteBuffer
    /// Attempts including this one.
    package var attempts: Int
    /// Proves the lease is still this worker's when the outcome is recorded.
    package var lease: UUID

    package init(
        id: Int64, eventID: UUID, enrollmentID: String, topic: String, body: ByteBuffer, attempts: Int, lease: UUID
    ) {
        self.id = id
        self.eventID = eventID
        self.enrollmentID = enrollmentID
        self.topic = topic
        self.body = body
        self.attempts = attempts
        self.lease = lease
    }
}

/// When undelivered events are given up on.
package struct WebhookExpiry: Sendable, Equatable {
    /// Pending longer than this (since recorded or retried): dead.
    package var maxAge: Duration
    /// After this many attempts: dead. `nil`: only the age counts.
    package var maxAttempts: Int?

    package init(maxAge: Duration, maxAttempts: Int?) {
        self.maxAge = maxAge
        self.maxAttempts = maxAttempts
    }
}

/// What one claim produced.
package struct WebhookClaim: Sendable, Equatable {
    /// At most one per enrollment, each leased to the claimer.
    package var deliveries: [WebhookDelivery]
    /// Events of the claimed enrollments that had expired and became dead letters instead.
    package var expired: Int

    package init(deliveries: [WebhookDelivery], expired: Int) {
        self.deliveries = deliveries
        self.expired = expired
    }
}

/// Outbox sizes, for metrics and the operators' summary log.
package struct WebhookEventCounts: Sendable, Equatable {
    package var pending: Int
    package var dead: Int
    /// When the oldest pending event was recorded (or retried); `nil` when none is pending.
    package var oldestPendingSince: Date?

    package init(pending: Int, dead: Int, oldestPendingSince: Date?) {
        self.pending = pending
        self.dead = dead
        self.oldestPendingSince = oldestPendingSince
    }
}

/// One event as operators see it (the body is fetched separately).
package struct WebhookEventSummary: Sendable, Equatable {
    package var id: Int64
    package var eventID: UUID
    package var enrollmentID: String
    package var topic: String
    package var state: WebhookEventState
    package var attempts: Int
    package var lastError: String?
    package var createdAt: Date
    package var updatedAt: Date

    package init(
        id: Int64,
        eventID: UUID,
        enrollmentID: String,
        topic: String,
        state: WebhookEventState,
        attempts: Int,
        lastError: String?,
        createdAt: Date,
        updatedAt: Date
    ) {
        self.id = id
        self.eventID = eventID
        self.enrollmentID = enrollmentID
        self.topic = topic
        self.state = state
        self.attempts = attempts
        self.lastError = lastError
        self.createdAt = createdAt
        self.updatedAt = updatedAt
    }
}

/// Which dead letters to deliver again.
package enum WebhookRetrySelection: Sendable, Equatable {
    case all
    case ids([Int64])
    case enrollment(String)
}

/// The delivery side of the webhook outbox. Several workers (replicas) may share it: an
/// enrollment's events go to one worker at a time, in order.
package protocol WebhookEventStore: Sendable {
    /// Leases the head event of up to `limit` enrollments whose next attempt is due, for
    /// `lease` (after which another worker may take it: a crashed worker loses nothing).
    /// Expired events of those enrollments become dead letters first.
    func claim(limit: Int, lease: Duration, expiry: WebhookExpiry) async throws -> WebhookClaim

    /// Records a delivery and releases the enrollment for its next event.
    func markDelivered(_ delivery: WebhookDelivery) async throws

    /// Records a failed attempt: the enrollment waits `retryAfter`, or, when the event has
    /// expired, the event becomes a dead letter and the enrollment proceeds. Returns whether
    /// the event is now dead.
    func markFailed(_ delivery: WebhookDelivery, error: String, retryAfter: Duration, expiry: WebhookExpiry)
        async throws -> Bool

    /// Deletes delivered events older than `deliveredRetention` and dead ones older than
    /// `deadRetention`. Returns how many went.
    func deleteExpired(deliveredRetention: Duration, deadRetention: Duration) async throws -> Int

    func counts() async throws -> WebhookEventCounts

    /// Events in `state`, oldest first, with `id > afterID`.
    func listEvents(state: WebhookEventState, enrollmentID: String?, afterID: Int64, limit: Int) async throws
        -> [WebhookEventSummary]

    /// The stored JSON body of one event.
    func fetchEventBody(id: Int64) async throws -> ByteBuffer?

    /// Makes dead letters pending again (attempts and age restart). Returns how many.
    func retryDead(_ selection: WebhookRetrySelection) async throws -> Int
}
