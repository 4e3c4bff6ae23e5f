/// One numbered schema change. Applied migrations are immutable: change the schema by appending
/// a new one, never by editing an applied one.
package struct Migration: Sendable {
    package var version: Int
    package var name: String
    /// Run in order inside one transaction. One statement per element: the extended query
    /// protocol takes a single statement per query.
    package var statements: [String]
}

extension Migration {
    /// Every migration, in version order.
    package static let all: [Migration] = [
        Migration(version: 1, name: "initial", statements: initialSchema),
        Migration(version: 2, name: "push delivery", statements: pushDelivery),
        Migration(version: 3, name: "webhook_events", statements: webhookSchema),
    ]
}

// Raw Apple messages and commands are `bytea`: they are returned to devices byte for byte and
// may be binary plists. Identifiers are opaque and compared verbatim, so they use the "C"
// collation: byte-wise comparison keeps their indexes cheap whatever the database's locale.
private let initialSchema: [String] = [
    """
    CREATE TABLE devices (
        id text COLLATE "C" PRIMARY KEY,
        serial_number text,
        identity_cert bytea,
        authenticate bytea,
        authenticate_at timestamptz,
        unlock_token bytea,
        unlock_token_at timestamptz,
        bootstrap_token bytea,
        bootstrap_token_at timestamptz,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now()
    )
    """,
    "CREATE INDEX devices_serial_number_idx ON devices (serial_number)",
    // `device_id` is the device-channel ID (a UDID, or the EnrollmentID of a User Enrollment).
    // User channels carry their user's names here instead of in a separate table. Every poll
    // moves `last_seen_at` (not indexed): free space per page keeps those updates HOT.
    """
    CREATE TABLE enrollments (
        id text COLLATE "C" PRIMARY KEY,
        device_id text COLLATE "C" NOT NULL REFERENCES devices (id),
        type text NOT NULL,
        parent_id text COLLATE "C",
        user_id text,
        user_short_name text,
        user_long_name text,
        topic text,
        push_magic text,
        token_hex text,
        enabled boolean NOT NULL DEFAULT false,
        token_update_tally integer NOT NULL DEFAULT 0,
        token_update bytea,
        token_update_at timestamptz,
        last_seen_at timestamptz,
        push_unregistered_at timestamptz,
        push_error text,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now()
    ) WITH (fillfactor = 80)
    """,
    "CREATE INDEX enrollments_device_id_idx ON enrollments (device_id)",
    // A certificate hash belongs to one device only; a device may hold several hashes.
    """
    CREATE TABLE certificate_bindings (
        sha256 bytea PRIMARY KEY CHECK (length(sha256) = 32),
        device_id text COLLATE "C" NOT NULL REFERENCES devices (id),
        created_at timestamptz NOT NULL DEFAULT now()
    )
    """,
    "CREATE INDEX certificate_bindings_device_id_idx ON certificate_bindings (device_id)",
    """
    CREATE TABLE commands (
        command_uuid text COLLATE "C" PRIMARY KEY,
        request_type text NOT NULL,
        command bytea NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now()
    )
    """,
    // `seq` orders delivery: strict FIFO for equal priority, even within one millisecond.
    // No foreign keys: a fan-out inserts 100k entries at once and per-row checks would cost a
    // third of it. The enqueue statement inserts entries only for enrollments it has just joined
    // and the command it has just inserted, and enrollments and commands are never deleted.
    """
    CREATE TABLE queue_entries (
        enrollment_id text COLLATE "C" NOT NULL,
        command_uuid text COLLATE "C" NOT NULL,
        seq bigint GENERATED ALWAYS AS IDENTITY,
        priority smallint NOT NULL DEFAULT 0,
        state text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done', 'inactive')),
        not_now_at timestamptz,
        not_now_count integer NOT NULL DEFAULT 0,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (enrollment_id, command_uuid)
    )
    """,
    // Only pending entries are in the lookup path, so choosing the next command costs the same
    // however long a device's history grows.
    """
    CREATE INDEX queue_entries_pending_idx ON queue_entries (enrollment_id, priority DESC, seq)
        WHERE state = 'pending'
    """,
    """
    CREATE TABLE command_results (
        enrollment_id text COLLATE "C" NOT NULL,
        command_uuid text COLLATE "C" NOT NULL,
        status text NOT NULL,
        result bytea NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (enrollment_id, command_uuid),
        FOREIGN KEY (enrollment_id, command_uuid) REFERENCES queue_entries (enrollment_id, command_uuid)
    )
    """,
    // Push intent, recorded in the same statement as the queue entries so a push can be
    // re-driven after a bus outage. Rows are transient, so no foreign key slows the fan-out.
    """
    CREATE TABLE push_outbox (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        enrollment_id text COLLATE "C" NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now()
    )
    """,
    // `private_key` is bytes so it can hold an encrypted key once encryption at rest is on.
    """
    CREATE TABLE push_certificates (
        topic text COLLATE "C" PRIMARY KEY,
        certificate_pem text NOT NULL,
        private_key bytea NOT NULL,
        not_after timestamptz NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now()
    )
    """,
]

// Push delivery state. An outbox row is a push still owed to an enrollment for one request: the
// API publishes the request right after its transaction and the row waits until `not_before`
// before anyone re-drives it (the API moves `not_before` to now when publishing failed). A
// PushService replica deletes the row once APNs gave a final answer for it.
private let pushDelivery: [String] = [
    """
    ALTER TABLE push_outbox
        ADD COLUMN request_id text COLLATE "C" NOT NULL DEFAULT '',
        ADD COLUMN not_before timestamptz NOT NULL DEFAULT now(),
        ADD COLUMN attempts integer NOT NULL DEFAULT 0
    """,
    "ALTER TABLE push_outbox ALTER COLUMN request_id DROP DEFAULT",
    // Rows are settled by (request, enrollment) and re-driven by request.
    "CREATE INDEX push_outbox_request_id_idx ON push_outbox (request_id, enrollment_id)",
    "CREATE INDEX push_outbox_not_before_idx ON push_outbox (not_before)",
    // The last APNs answer, for operators: the apns-id of the last accepted push, or why APNs
    // refused it (`push_error`, and `push_unregistered_at` for 410 Unregistered).
    """
    ALTER TABLE enrollments
        ADD COLUMN last_push_at timestamptz,
        ADD COLUMN last_push_id text
    """,
]

// The webhook outbox. Events are inserted by the statement that makes the change they describe
// and delivered in `id` order per enrollment by `WebhookWorker`. `webhook_queues` holds one row
// per enrollment that ever had an event: the row is the per-enrollment lock a worker claims with
// `FOR UPDATE SKIP LOCKED`, and its `next_attempt_at` (lease, backoff, or 'infinity' when idle)
// is all a claim scans, so a backlog of undelivered events does not slow the claim.
private let webhookSchema: [String] = [
    """
    CREATE TABLE webhook_events (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        event_id uuid NOT NULL,
        enrollment_id text COLLATE "C" NOT NULL,
        topic text NOT NULL,
        body bytea NOT NULL,
        state text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'dead')),
        attempts integer NOT NULL DEFAULT 0,
        last_error text,
        pending_since timestamptz NOT NULL DEFAULT now(),
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now()
    )
    """,
    // The head of an enrollment's outbox is the first entry of this index; delivered and dead
    // events leave it, so the lookup does not grow with history.
    """
    CREATE INDEX webhook_events_pending_idx ON webhook_events (enrollment_id, id) WHERE state = 'pending'
    """,
    // Dead letters are few and listed by operators; counting them must not scan the history.
    "CREATE INDEX webhook_events_dead_idx ON webhook_events (id) WHERE state = 'dead'",
    // Rows arrive in `created_at` order, so a BRIN index finds the expired ones for retention at
    // almost no cost on insert.
    "CREATE INDEX webhook_events_created_at_idx ON webhook_events USING brin (created_at)",
    """
    CREATE TABLE webhook_queues (
        enrollment_id text COLLATE "C" PRIMARY KEY,
        next_attempt_at timestamptz NOT NULL DEFAULT now(),
        lease uuid
    )
    """,
    "CREATE INDEX webhook_queues_next_attempt_at_idx ON webhook_queues (next_attempt_at)",
]
