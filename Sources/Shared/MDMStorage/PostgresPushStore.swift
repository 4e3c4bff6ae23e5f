import Foundation
import Logging
import PostgresNIO

/// `PushStore` on PostgreSQL. Every method is one statement whatever the batch size: the
/// batches travel as arrays.
package struct PostgresPushStore: PushStore {
    private let client: PostgresClient
    private let logger: Logger

    package init(client: PostgresClient, logger: Logger) {
        self.client = client
        self.logger = logger
    }

    package func fetchPushTargets(enrollmentIDs: [String]) async throws -> [PushTarget] {
        let rows = try await client.query(
            """
            SELECT e.id, e.topic, e.token_hex, e.push_magic, c.updated_at, e.push_unregistered_at
            FROM enrollments e
            LEFT JOIN push_certificates c ON c.topic = e.topic
            WHERE e.id IN (SELECT unnest(\(enrollmentIDs)::text[]))
                AND e.enabled AND e.topic IS NOT NULL AND e.token_hex IS NOT NULL AND e.push_magic IS NOT NULL
            """,
            logger: logger
        )
        var targets: [PushTarget] = []
        targets.reserveCapacity(enrollmentIDs.count)
        for try await (id, topic, token, magic, version, unregisteredAt) in rows.decode(
            (String, String, String, String, Date?, Date?).self
        ) {
            targets.append(
                PushTarget(
                    enrollmentID: id,
                    topic: topic,
                    tokenHex: token,
                    pushMagic: magic,
                    certificateVersion: version,
                    unregisteredAt: unregisteredAt
                )
            )
        }
        return targets
    }

    package func recordPushOutcomes(
        _ outcomes: [PushOutcomeRecord],
        settled: [OwedPush],
        deferred: [OwedPush],
        redriveAfter: Duration
    ) async throws {
        guard !outcomes.isEmpty || !settled.isEmpty || !deferred.isEmpty else { return }
        let ids = outcomes.map(\.enrollmentID)
        let kinds = outcomes.map(\.kind.rawValue)
        let details = outcomes.map(\.detail)
        // Epoch seconds; 0 stands for "no timestamp" (arrays of nullable values do not bind).
        let unregisteredAt = outcomes.map { $0.unregisteredAt?.timeIntervalSince1970 ?? 0 }
        try await client.query(
            """
            WITH outcome AS (
                SELECT * FROM unnest(\(ids)::text[], \(kinds)::text[], \(details)::text[], \(unregisteredAt)::float8[])
                    AS o(enrollment_id, kind, detail, unregistered_at)
            ),
            recorded AS (
                UPDATE enrollments e SET
                    last_push_at = CASE WHEN o.kind = 'delivered' THEN now() ELSE e.last_push_at END,
                    last_push_id = CASE WHEN o.kind = 'delivered' THEN o.detail ELSE e.last_push_id END,
                    push_error = CASE WHEN o.kind = 'delivered' THEN NULL ELSE o.detail END,
                    push_unregistered_at = CASE
                        WHEN o.kind = 'unregistered'
                            THEN coalesce(to_timestamp(nullif(o.unregistered_at, 0)), now())
                        ELSE e.push_unregistered_at
                    END
                FROM outcome o
                WHERE e.id = o.enrollment_id
            ),
            settled AS (
                DELETE FROM push_outbox p
                USING unnest(\(settled.map(\.requestID))::text[], \(settled.map(\.enrollmentID))::text[])
                    AS s(request_id, enrollment_id)
                WHERE p.enrollment_id = s.enrollment_id AND p.request_id = s.request_id
            ),
            deferred AS (
                UPDATE push_outbox p SET
                    not_before = now() + make_interval(secs => \(redriveAfter.secondsValue)),
                    attempts = p.attempts + 1
                FROM unnest(\(deferred.map(\.requestID))::text[], \(deferred.map(\.enrollmentID))::text[])
                    AS d(request_id, enrollment_id)
                WHERE p.enrollment_id = d.enrollment_id AND p.request_id = d.request_id
            )
            SELECT 1
            """,
            logger: logger
        )
    }

    package func claimDuePushes(limit: Int, redriveAfter: Duration, maxAttempts: Int) async throws
        -> (due: [DuePushes], abandoned: Int)
    {
        let rows = try await client.query(
            """
            WITH due AS (
                SELECT id, attempts >= \(maxAttempts) AS spent FROM push_outbox
                WHERE not_before <= now()
                ORDER BY not_before
                LIMIT \(limit)
                FOR UPDATE SKIP LOCKED
            ),
            abandoned AS (
                DELETE FROM push_outbox p USING due WHERE p.id = due.id AND due.spent
                RETURNING p.id
            ),
            claimed AS (
                UPDATE push_outbox p SET not_before = now() + make_interval(secs => \(redriveAfter.secondsValue))
                FROM due WHERE p.id = due.id AND NOT due.spent
                RETURNING p.request_id, p.enrollment_id
            )
            SELECT request_id, array_agg(enrollment_id), (SELECT count(*) FROM abandoned)
            FROM claimed GROUP BY request_id
            UNION ALL
            SELECT NULL, NULL, (SELECT count(*) FROM abandoned)
            """,
            logger: logger
        )
        var due: [DuePushes] = []
        var abandoned = 0
        for try await (requestID, ids, spent) in rows.decode((String?, [String]?, Int).self) {
            abandoned = spent
            if let requestID, let ids { due.append(DuePushes(requestID: requestID, enrollmentIDs: ids)) }
        }
        return (due, abandoned)
    }

    package func redriveNow(requestIDs: [String]) async throws {
        guard !requestIDs.isEmpty else { return }
        try await client.query(
            "UPDATE push_outbox SET not_before = now() WHERE request_id IN (SELECT unnest(\(requestIDs)::text[]))",
            logger: logger
        )
    }
}
