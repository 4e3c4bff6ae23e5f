import Foundation
import Logging
import MDMProtocol
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
        switch PollKind(ReportStatus(poll.status)) {
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
