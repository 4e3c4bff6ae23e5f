import Foundation
import MDMProtocol
import NIOCore
import PostgresNIO

/// What a report can change, by its status: each kind has its own prepared statement, so that
/// PostgreSQL does not set up, on every execution, the parts a status never runs (about a
/// fifth of its time in the poll went to executor start-up for the one statement of all three).
package enum PollKind: Sendable, Equatable {
    case idle
    case notNow
    /// Acknowledged, Error, CommandFormatError or any other status: the result is stored.
    case final

    /// The kind of poll a report's status asks for (the status rule is `ReportStatus`'s).
    package init(_ status: ReportStatus) {
        switch status {
        case .idle: self = .idle
        case .notNow: self = .notNow
        case .final: self = .final
        }
    }
}

/// The SQL of one kind of poll, plain and recording a webhook event.
package protocol PollKindStatements: Sendable {
    static var kind: PollKind { get }
    static var plainSQL: String { get }
    static var webhookSQL: String { get }
}

package enum IdlePoll: PollKindStatements {
    package static let kind = PollKind.idle
    package static let plainSQL = PollSQL.make(.idle, recording: nil)
    package static let webhookSQL = PollSQL.make(.idle, recording: PollSQL.webhookRecording)
}

package enum NotNowPoll: PollKindStatements {
    package static let kind = PollKind.notNow
    package static let plainSQL = PollSQL.make(.notNow, recording: nil)
    package static let webhookSQL = PollSQL.make(.notNow, recording: PollSQL.webhookRecording)
}

package enum FinalPoll: PollKindStatements {
    package static let kind = PollKind.final
    package static let plainSQL = PollSQL.make(.final, recording: nil)
    package static let webhookSQL = PollSQL.make(.final, recording: PollSQL.webhookRecording)
}

/// A device report and the choice of its next command, in one statement:
/// 1. the binding check (the hash must be bound to the device channel) gates every change;
/// 2. `last_seen_at` moves; a final status stores the result and retires the pending entry;
///    NotNow is counted on the pending entry; a CommandUUID with no pending entry changes nothing;
/// 3. the next entry is the first pending one by `priority DESC, seq`. Changes made by the CTEs
///    are invisible to this statement's reads, so the reported command is excluded explicitly,
///    and after a NotNow only entries never answered with NotNow qualify.
///
/// Each kind of status has its own statement with only its own changes (`PollKind`); every
/// change is still gated on `$4`, so a statement run for the wrong status changes nothing.
///
/// The result row carries the device the hash is bound to, so the caller can tell a refusal.
///
/// The reported entry is found by its primary key. Its state test is written
/// `(state = 'pending') IS TRUE` so that it does not match the partial index's predicate: with
/// a plain `state = 'pending'` PostgreSQL may pick `queue_entries_pending_idx`, whose only key
/// column here is the enrollment, and then read every pending entry of the device to find one
/// CommandUUID — a drain of a long queue got slower with its length.
///
/// An `Idle` poll whose only change is `last_seen_at` commits without waiting for its WAL
/// flush (`synchronous_commit` off for that transaction alone, decision 0005): a crash can
/// lose the last fraction of a second of "last seen" times, never a result, a retirement or
/// an event. The webhook variant records an event on every poll and keeps the flush.
package enum PollSQL {
    /// Records the report's `mdm.Connect` event (Idle included) when the identity is allowed:
    /// $7 event ID, $8 its body; the event belongs to the reporting enrollment ($1).
    static let webhookRecording = WebhookOutboxSQL.recordEvent(select: "$7, $1, 'mdm.Connect', $8 FROM allowed")

    /// The poll of `kind` with `recording` (CTEs) after the binding check's CTEs; without
    /// recording, an `Idle` poll's commit does not wait for the WAL flush.
    static func make(_ kind: PollKind, recording: String?) -> String {
        let changes =
            switch kind {
            case .idle: ""
            case .final:
                """
                retired AS (
                    UPDATE queue_entries SET state = 'done', updated_at = now()
                    WHERE enrollment_id = $1 AND command_uuid = $5 AND (state = 'pending') IS TRUE
                        AND $4 NOT IN ('Idle', 'NotNow') AND EXISTS (SELECT 1 FROM allowed)
                    RETURNING enrollment_id, command_uuid
                ),
                result AS (
                    INSERT INTO command_results (enrollment_id, command_uuid, status, result)
                    SELECT enrollment_id, command_uuid, $4, $6 FROM retired
                    ON CONFLICT (enrollment_id, command_uuid) DO UPDATE SET
                        status = excluded.status, result = excluded.result, updated_at = now()
                ),
                """
            case .notNow:
                """
                not_now AS (
                    UPDATE queue_entries SET
                        not_now_at = coalesce(not_now_at, now()), not_now_count = not_now_count + 1, updated_at = now()
                    WHERE enrollment_id = $1 AND command_uuid = $5 AND (state = 'pending') IS TRUE
                        AND $4 = 'NotNow' AND EXISTS (SELECT 1 FROM allowed)
                ),
                """
            }
        let nextFilter =
            switch kind {
            case .idle: ""
            case .final: "\n        AND ($5 IS NULL OR command_uuid <> $5)"
            case .notNow: "\n        AND ($5 IS NULL OR command_uuid <> $5) AND not_now_count = 0"
            }
        let relaxed =
            kind == .idle && recording == nil
            ? "\nrelaxed AS (\n    SELECT set_config('synchronous_commit', 'off', true) WHERE $4 = 'Idle'\n),"
            : ""
        let gate = relaxed.isEmpty ? "" : "\nWHERE (SELECT count(*) FROM relaxed) >= 0"
        return """
            WITH binding AS (
                SELECT device_id FROM certificate_bindings WHERE sha256 = $3
            ),
            allowed AS (
                SELECT 1 FROM binding WHERE device_id = $2
            ),\(recording.map { "\n" + $0 + "," } ?? "")
            seen AS (
                UPDATE enrollments SET last_seen_at = now()
                WHERE id = $1 AND EXISTS (SELECT 1 FROM allowed)
                    AND (last_seen_at IS NULL OR last_seen_at < now() - interval '1 second')
            ),
            \(changes)\(relaxed)
            next AS (
                SELECT command_uuid FROM queue_entries
                WHERE enrollment_id = $1 AND state = 'pending' AND EXISTS (SELECT 1 FROM allowed)\(nextFilter)
                ORDER BY priority DESC, seq
                LIMIT 1
            )
            SELECT (SELECT device_id FROM binding), next.command_uuid, commands.command
            FROM (SELECT 1) AS one
            LEFT JOIN next ON true
            LEFT JOIN commands ON commands.command_uuid = next.command_uuid\(gate)
            """
    }
}

/// One kind's poll without a webhook event.
package struct PollStatement<Kind: PollKindStatements>: CommandPollStatement {
    package static var name: String { "mdm_poll_\(Kind.kind)_v3" }
    package static var bindingDataTypes: [PostgresDataType] { [.text, .text, .bytea, .text, .text, .bytea] }
    package static var sql: String { Kind.plainSQL }

    package typealias Row = (String?, String?, ByteBuffer?)

    var enrollmentID: String
    var deviceChannelID: String
    var certificateHash: ByteBuffer
    var status: String
    var commandUUID: String?
    var rawReport: Data?

    package init(_ poll: CommandPoll) {
        self.enrollmentID = poll.enrollmentID
        self.deviceChannelID = poll.deviceChannelID
        self.certificateHash = ByteBuffer(bytes: poll.certificateHash)
        self.status = poll.status
        self.commandUUID = poll.commandUUID
        // Only final statuses store the report; Idle and NotNow need not ship it.
        self.rawReport = Kind.kind == .final ? poll.rawReport : nil
    }

    package func makeBindings() throws -> PostgresBindings {
        var bindings = PostgresBindings(capacity: 6)
        bindings.append(enrollmentID)
        bindings.append(deviceChannelID)
        bindings.append(certificateHash)
        bindings.append(status)
        bindings.append(commandUUID)
        try bindings.append(rawReport)
        return bindings
    }

    package func decodeRow(_ row: PostgresRow) throws -> Row {
        try row.decode(Row.self)
    }
}

/// The poll statements: one per kind, plain or recording a webhook event.
package protocol CommandPollStatement: PostgresPreparedStatement where Row == (String?, String?, ByteBuffer?) {}

/// `PollStatement` that also records the report's webhook event (`mdm.Connect`, Idle
/// included) when the identity is allowed: $7 event ID, $8 its body.
package struct PollWebhookStatement<Kind: PollKindStatements>: CommandPollStatement {
    package static var name: String { "mdm_poll_webhook_\(Kind.kind)_v3" }
    package static var bindingDataTypes: [PostgresDataType] {
        PollStatement<Kind>.bindingDataTypes + [.uuid, .bytea]
    }
    package static var sql: String { Kind.webhookSQL }

    package typealias Row = PollStatement<Kind>.Row

    var poll: PollStatement<Kind>
    var event: WebhookEventRecord

    package init(_ poll: PollStatement<Kind>, event: WebhookEventRecord) {
        self.poll = poll
        self.event = event
    }

    package func makeBindings() throws -> PostgresBindings {
        var bindings = try poll.makeBindings()
        bindings.append(event.eventID)
        bindings.append(ByteBuffer(bytes: event.body))
        return bindings
    }

    package func decodeRow(_ row: PostgresRow) throws -> Row {
        try row.decode(Row.self)
    }
}
