import Foundation
import Logging
import NIOCore
import PostgresNIO

/// `CommandQueue` on PostgreSQL. Enqueue and poll are each a single statement (one round trip),
/// prepared once per connection.
package struct PostgresCommandQueue: CommandQueue {
    private let client: PostgresClient
    private let logger: Logger

    package init(client: PostgresClient, logger: Logger) {
        self.client = client
        self.logger = logger
    }

    /// When no target is known, nothing is stored (not even the command), so the same
    /// CommandUUID can be enqueued again once its targets exist.
    package func enqueue(
        _ command: NewCommand,
        to enrollmentIDs: [String],
        pushIntent: PushIntent?
    ) async throws -> EnqueueOutcome {
        let statement = EnqueueStatement(command: command, targets: enrollmentIDs, pushIntent: pushIntent)
        let rows = try await client.execute(statement, logger: logger)
        var result: EnqueueStatement.Row?
        for try await row in rows {
            result = row
        }
        guard let (duplicate, queuedIDs) = result, !duplicate else {
            throw StorageError.duplicateCommand(command.commandUUID)
        }
        let queued = Set(queuedIDs)
        var seen: Set<String> = []
        var outcome = EnqueueOutcome(queued: [], unknown: [])
        for id in enrollmentIDs where seen.insert(id).inserted {
            if queued.contains(id) {
                outcome.queued.append(id)
            } else {
                outcome.unknown.append(id)
            }
        }
        return outcome
    }

    package func recordPushIntent(_ intent: PushIntent, enrollmentIDs: [String]) async throws -> [String] {
        let recorded = try await client.query(
            """
            WITH recorded AS (
                INSERT INTO push_outbox (enrollment_id, request_id, not_before)
                SELECT id, \(intent.requestID), now() + make_interval(secs => \(intent.redriveAfterSeconds))
                FROM enrollments WHERE id IN (SELECT unnest(\(enrollmentIDs)::text[]))
                RETURNING enrollment_id
            )
            SELECT ARRAY(SELECT enrollment_id FROM recorded)
            """,
            logger: logger
        ).first(decoding: [String].self)
        let known = Set(recorded ?? [])
        var seen: Set<String> = []
        return enrollmentIDs.filter { !known.contains($0) && seen.insert($0).inserted }
    }

    package func poll(_ poll: CommandPoll) async throws -> CommandPollOutcome {
        switch PollKind(status: poll.status) {
        case .idle: try await self.poll(poll, kind: IdlePoll.self)
        case .notNow: try await self.poll(poll, kind: NotNowPoll.self)
        case .final: try await self.poll(poll, kind: FinalPoll.self)
        }
    }

    /// Without a webhook the poll pays nothing for the outbox.
    private func poll<Kind: PollKindStatements>(_ poll: CommandPoll, kind: Kind.Type) async throws
        -> CommandPollOutcome
    {
        let statement = PollStatement<Kind>(poll)
        guard let event = poll.webhookEvent else {
            return try await self.poll(poll, statement: statement)
        }
        return try await self.poll(poll, statement: PollWebhookStatement(statement, event: event))
    }

    private func poll<Statement: CommandPollStatement>(_ poll: CommandPoll, statement: Statement) async throws
        -> CommandPollOutcome
    {
        let first = try await execute(statement)
        let decision = CertificateBindings.decision(
            boundDeviceID: first.boundDeviceID,
            deviceChannelID: poll.deviceChannelID
        )
        switch decision {
        case .allowed:
            return .next(first.next)
        case .boundToAnotherDevice:
            return .refused(decision)
        case .notBound:
            guard poll.retro else { return .refused(decision) }
            let bound = try await CertificateBindings.bindOnFirstSight(
                ByteBuffer(bytes: poll.certificateHash),
                deviceChannelID: poll.deviceChannelID,
                client: client,
                logger: logger
            )
            guard bound == .allowed else { return .refused(bound) }
            return .next(try await execute(statement).next)
        }
    }

    private func execute<Statement: CommandPollStatement>(_ statement: Statement) async throws
        -> (boundDeviceID: String?, next: QueuedCommand?)
    {
        for try await (boundDeviceID, commandUUID, plist) in try await client.execute(statement, logger: logger) {
            guard let commandUUID, let plist else { return (boundDeviceID, nil) }
            return (boundDeviceID, QueuedCommand(commandUUID: commandUUID, plist: plist))
        }
        return (nil, nil)
    }
}

/// Inserts the command, one queue entry per known target and (optionally) one push outbox row
/// per queued target, tagged with the push request that will carry it. The targets travel as one `text[]`, so any number fits in one statement.
///
/// The command is inserted only when some target exists. A duplicate is a CommandUUID that
/// could not be inserted although it should have been, or that already existed.
package struct EnqueueStatement: PostgresPreparedStatement {
    package static let name = "mdm_enqueue_v2"
    package static let bindingDataTypes: [PostgresDataType] = [
        .text, .text, .bytea, .int2, .textArray, .bool, .text, .float8,
    ]
    package static let sql = """
        WITH known AS (
            SELECT id FROM enrollments WHERE id IN (SELECT unnest($5::text[]))
        ),
        command AS (
            INSERT INTO commands (command_uuid, request_type, command)
            SELECT $1, $2, $3 WHERE EXISTS (SELECT 1 FROM known)
            ON CONFLICT (command_uuid) DO NOTHING
            RETURNING command_uuid
        ),
        queued AS (
            INSERT INTO queue_entries (enrollment_id, command_uuid, priority)
            SELECT known.id, command.command_uuid, $4 FROM known CROSS JOIN command
            RETURNING enrollment_id
        ),
        pushes AS (
            INSERT INTO push_outbox (enrollment_id, request_id, not_before)
            SELECT enrollment_id, $7, now() + make_interval(secs => $8) FROM queued WHERE $6
        )
        SELECT
            NOT EXISTS (SELECT 1 FROM command)
                AND (EXISTS (SELECT 1 FROM known) OR EXISTS (SELECT 1 FROM commands WHERE command_uuid = $1)),
            ARRAY(SELECT enrollment_id FROM queued)
        """

    package typealias Row = (Bool, [String])

    var command: NewCommand
    var targets: [String]
    var pushIntent: PushIntent?

    package init(command: NewCommand, targets: [String], pushIntent: PushIntent?) {
        self.command = command
        self.targets = targets
        self.pushIntent = pushIntent
    }

    package func makeBindings() throws -> PostgresBindings {
        var bindings = PostgresBindings(capacity: 8)
        bindings.append(command.commandUUID)
        bindings.append(command.requestType)
        try bindings.append(command.plist)
        bindings.append(command.priority)
        bindings.append(targets)
        bindings.append(pushIntent != nil)
        bindings.append(pushIntent?.requestID ?? "")
        bindings.append(pushIntent?.redriveAfterSeconds ?? 0)
        return bindings
    }

    package func decodeRow(_ row: PostgresRow) throws -> Row {
        try row.decode(Row.self)
    }
}

/// What a report can change, by its status: each kind has its own prepared statement, so that
/// PostgreSQL does not set up, on every execution, the parts a status never runs (about a
/// fifth of its time in the poll went to executor start-up for the one statement of all three).
package enum PollKind: Sendable, Equatable {
    case idle
    case notNow
    /// Acknowledged, Error, CommandFormatError or any other status: the result is stored.
    case final

    package init(status: String) {
        switch status {
        case "Idle": self = .idle
        case "NotNow": self = .notNow
        default: self = .final
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
        var changes: [String] = []
        switch kind {
        case .idle:
            break
        case .final:
            changes.append(
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
                """)
        case .notNow:
            changes.append(
                """
                not_now AS (
                    UPDATE queue_entries SET
                        not_now_at = coalesce(not_now_at, now()), not_now_count = not_now_count + 1, updated_at = now()
                    WHERE enrollment_id = $1 AND command_uuid = $5 AND (state = 'pending') IS TRUE
                        AND $4 = 'NotNow' AND EXISTS (SELECT 1 FROM allowed)
                ),
                """)
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
            \(changes.joined())\(relaxed)
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
