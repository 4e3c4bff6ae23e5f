import Foundation
import Logging
import NIOCore
import PostgresNIO

/// SQL shared by every statement that records a webhook event with its change.
enum WebhookOutboxSQL {
    /// The CTEs `webhook_event` and `webhook_queue`: insert one event from `select` (the
    /// expressions `event_id, enrollment_id, topic, body`, optionally with FROM/WHERE that gate
    /// it), and wake the enrollment's queue row if it was idle. A queue in backoff or leased
    /// stays as it is: its worker picks the new event up after the current head.
    static func recordEvent(select: String) -> String {
        """
        webhook_event AS (
            INSERT INTO webhook_events (event_id, enrollment_id, topic, body)
            SELECT \(select)
            RETURNING enrollment_id
        ),
        webhook_queue AS (
            INSERT INTO webhook_queues AS q (enrollment_id) SELECT enrollment_id FROM webhook_event
            ON CONFLICT (enrollment_id) DO UPDATE SET next_attempt_at = now()
            WHERE q.next_attempt_at = 'infinity'
        )
        """
    }
}

/// `WebhookEventStore` on PostgreSQL.
///
/// A claim locks due `webhook_queues` rows with `FOR UPDATE SKIP LOCKED`, then, in a second
/// statement of the same transaction, reads their heads. The second statement's snapshot is
/// taken after the locks are held, so an event committed by a recorder that touched the queue
/// row first is seen; a recorder that comes later waits for the lock and wakes the queue if
/// the claim found it empty and marked it idle. Either way no event is left behind an idle queue.
package struct PostgresWebhookEventStore: WebhookEventStore {
    private let client: PostgresClient
    private let logger: Logger

    /// Rows deleted per retention statement, so one pass never holds a huge transaction.
    static let deleteBatch = 10_000

    package init(client: PostgresClient, logger: Logger) {
        self.client = client
        self.logger = logger
    }

    package func claim(limit: Int, lease: Duration, expiry: WebhookExpiry) async throws -> WebhookClaim {
        guard limit > 0 else { return WebhookClaim(deliveries: [], expired: 0) }
        let logger = self.logger
        let leaseID = UUID()
        var binds = PostgresBindings(capacity: 5)
        binds.append(lease.secondsValue)
        binds.append(leaseID)
        binds.append(expiry.maxAttempts ?? 0)
        binds.append(expiry.maxAge.secondsValue)
        return try await client.withTransaction(logger: logger) { connection in
            var enrollments: [String] = []
            let due = try await connection.query(
                """
                SELECT enrollment_id FROM webhook_queues WHERE next_attempt_at <= now()
                ORDER BY next_attempt_at LIMIT \(limit)
                FOR UPDATE SKIP LOCKED
                """,
                logger: logger
            )
            for try await enrollment in due.decode(String.self) {
                enrollments.append(enrollment)
            }
            guard !enrollments.isEmpty else { return WebhookClaim(deliveries: [], expired: 0) }
            var claimBinds = binds
            claimBinds.append(enrollments)
            let rows = try await connection.query(
                PostgresQuery(unsafeSQL: Self.claimSQL, binds: claimBinds),
                logger: logger
            )
            var claim = WebhookClaim(deliveries: [], expired: 0)
            for try await (expired, id, eventID, enrollmentID, topic, body, attempts) in rows.decode(
                (Int, Int64?, UUID?, String?, String?, ByteBuffer?, Int?).self
            ) {
                claim.expired = expired
                guard let id, let eventID, let enrollmentID, let topic, let body, let attempts else { continue }
                claim.deliveries.append(
                    WebhookDelivery(
                        id: id,
                        eventID: eventID,
                        enrollmentID: enrollmentID,
                        topic: topic,
                        body: body,
                        attempts: attempts,
                        lease: leaseID
                    )
                )
            }
            claim.deliveries.sort { $0.id < $1.id }
            return claim
        }
    }

    package func markDelivered(_ delivery: WebhookDelivery) async throws {
        try await client.query(
            """
            WITH delivered AS (
                UPDATE webhook_events SET state = 'delivered', updated_at = now()
                WHERE id = \(delivery.id) AND state <> 'delivered'
            )
            UPDATE webhook_queues SET next_attempt_at = now(), lease = NULL
            WHERE enrollment_id = \(delivery.enrollmentID) AND lease = \(delivery.lease)
            """,
            logger: logger
        )
    }

    package func markFailed(
        _ delivery: WebhookDelivery,
        error: String,
        retryAfter: Duration,
        expiry: WebhookExpiry
    ) async throws -> Bool {
        let maxAttempts = expiry.maxAttempts ?? 0
        let maxAge = expiry.maxAge.secondsValue
        let retry = retryAfter.secondsValue
        let state = try await client.query(
            """
            WITH failed AS (
                UPDATE webhook_events SET
                    state = CASE
                        WHEN (\(maxAttempts) > 0 AND attempts >= \(maxAttempts))
                            OR pending_since < now() - \(maxAge) * interval '1 second'
                        THEN 'dead' ELSE 'pending' END,
                    last_error = \(error),
                    updated_at = now()
                WHERE id = \(delivery.id) AND state = 'pending'
                RETURNING state
            ),
            queue AS (
                UPDATE webhook_queues SET
                    next_attempt_at = CASE WHEN (SELECT state FROM failed) = 'pending'
                        THEN now() + \(retry) * interval '1 second' ELSE now() END,
                    lease = NULL
                WHERE enrollment_id = \(delivery.enrollmentID) AND lease = \(delivery.lease)
            )
            SELECT state FROM failed
            """,
            logger: logger
        ).first(decoding: String.self)
        return state == WebhookEventState.dead.rawValue
    }

    package func deleteExpired(deliveredRetention: Duration, deadRetention: Duration) async throws -> Int {
        var deleted = 0
        for (state, retention) in [("delivered", deliveredRetention), ("dead", deadRetention)] {
            let seconds = retention.secondsValue
            while true {
                // `created_at` first: the BRIN index narrows the scan to old block ranges.
                let count =
                    try await client.query(
                        """
                        WITH gone AS (
                            DELETE FROM webhook_events WHERE id IN (
                                SELECT id FROM webhook_events
                                WHERE created_at < now() - \(seconds) * interval '1 second' AND state = \(state)
                                LIMIT \(Self.deleteBatch)
                            )
                            RETURNING 1
                        )
                        SELECT count(*)::int FROM gone
                        """,
                        logger: logger
                    ).first(decoding: Int.self) ?? 0
                deleted += count
                if count < Self.deleteBatch { break }
            }
        }
        return deleted
    }

    package func counts() async throws -> WebhookEventCounts {
        let rows = try await client.query(
            """
            SELECT
                (SELECT count(*)::int FROM webhook_events WHERE state = 'pending'),
                (SELECT count(*)::int FROM webhook_events WHERE state = 'dead'),
                (SELECT min(pending_since) FROM webhook_events WHERE state = 'pending')
            """,
            logger: logger
        )
        for try await (pending, dead, oldest) in rows.decode((Int, Int, Date?).self) {
            return WebhookEventCounts(pending: pending, dead: dead, oldestPendingSince: oldest)
        }
        return WebhookEventCounts(pending: 0, dead: 0, oldestPendingSince: nil)
    }

    package func listEvents(
        state: WebhookEventState,
        enrollmentID: String?,
        afterID: Int64,
        limit: Int
    ) async throws -> [WebhookEventSummary] {
        let rows = try await client.query(
            """
            SELECT id, event_id, enrollment_id, topic, attempts, last_error, created_at, updated_at
            FROM webhook_events
            WHERE state = \(state.rawValue) AND id > \(afterID)
                AND (\(enrollmentID)::text IS NULL OR enrollment_id = \(enrollmentID))
            ORDER BY id LIMIT \(limit)
            """,
            logger: logger
        )
        var events: [WebhookEventSummary] = []
        for try await (id, eventID, enrollment, topic, attempts, lastError, createdAt, updatedAt) in rows.decode(
            (Int64, UUID, String, String, Int, String?, Date, Date).self
        ) {
            events.append(
                WebhookEventSummary(
                    id: id,
                    eventID: eventID,
                    enrollmentID: enrollment,
                    topic: topic,
                    state: state,
                    attempts: attempts,
                    lastError: lastError,
                    createdAt: createdAt,
                    updatedAt: updatedAt
                )
            )
        }
        return events
    }

    package func fetchEventBody(id: Int64) async throws -> ByteBuffer? {
        try await client.query("SELECT body FROM webhook_events WHERE id = \(id)", logger: logger)
            .first(decoding: ByteBuffer.self)
    }

    package func retryDead(_ selection: WebhookRetrySelection) async throws -> Int {
        var ids: [Int64]?
        var enrollmentID: String?
        switch selection {
        case .all: break
        case .ids(let selected): ids = selected
        case .enrollment(let id): enrollmentID = id
        }
        // The queue rows are woken like a recorder wakes them, so a claim racing this statement
        // cannot leave a retried event behind an idle queue.
        return try await client.query(
            """
            WITH retried AS (
                UPDATE webhook_events SET state = 'pending', attempts = 0, pending_since = now(), updated_at = now()
                WHERE state = 'dead'
                    AND (\(ids)::bigint[] IS NULL OR id = ANY(\(ids)::bigint[]))
                    AND (\(enrollmentID)::text IS NULL OR enrollment_id = \(enrollmentID))
                RETURNING enrollment_id
            ),
            woken AS (
                INSERT INTO webhook_queues AS q (enrollment_id) SELECT DISTINCT enrollment_id FROM retried
                ON CONFLICT (enrollment_id) DO UPDATE SET next_attempt_at = now()
                WHERE q.next_attempt_at = 'infinity'
            )
            SELECT count(*)::int FROM retried
            """,
            logger: logger
        ).first(decoding: Int.self) ?? 0
    }

    // $1 lease (s), $2 lease ID, $3 max attempts (0: none), $4 max age (s), $5 the locked
    // enrollments. CTE changes are invisible to the rest of the statement, so the head lookup
    // excludes the events it has just expired. At least one row comes back, carrying the count
    // of expired events; a row without an ID means no head was leased.
    private static let claimSQL = """
        WITH claimed AS (
            SELECT unnest($5::text[]) AS enrollment_id
        ),
        expired AS (
            UPDATE webhook_events SET
                state = 'dead',
                last_error = coalesce(last_error, 'not delivered before it expired'),
                updated_at = now()
            WHERE enrollment_id IN (SELECT enrollment_id FROM claimed) AND state = 'pending'
                AND (pending_since < now() - $4 * interval '1 second' OR ($3 > 0 AND attempts >= $3))
            RETURNING id
        ),
        heads AS (
            SELECT head.id, claimed.enrollment_id
            FROM claimed
            CROSS JOIN LATERAL (
                SELECT e.id FROM webhook_events e
                WHERE e.enrollment_id = claimed.enrollment_id AND e.state = 'pending'
                    AND e.id NOT IN (SELECT id FROM expired)
                ORDER BY e.id
                LIMIT 1
            ) AS head
        ),
        leased AS (
            UPDATE webhook_events e SET attempts = e.attempts + 1, updated_at = now()
            FROM heads WHERE e.id = heads.id
            RETURNING e.id, e.event_id, e.enrollment_id, e.topic, e.body, e.attempts
        ),
        queues AS (
            UPDATE webhook_queues q SET
                next_attempt_at = CASE WHEN heads.id IS NULL THEN 'infinity'
                    ELSE now() + $1 * interval '1 second' END,
                lease = CASE WHEN heads.id IS NULL THEN NULL ELSE $2::uuid END
            FROM claimed LEFT JOIN heads ON heads.enrollment_id = claimed.enrollment_id
            WHERE q.enrollment_id = claimed.enrollment_id
        )
        SELECT (SELECT count(*)::int FROM expired), leased.id, leased.event_id, leased.enrollment_id, leased.topic,
            leased.body, leased.attempts
        FROM (SELECT 1) AS one
        LEFT JOIN leased ON true
        """
}
