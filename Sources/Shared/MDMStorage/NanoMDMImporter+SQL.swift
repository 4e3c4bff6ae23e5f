/// The statements that write an import into SwiftMDM's schema.
extension NanoMDMImporter {
    // Each statement takes one JSON array ($1) and returns how many rows were new.
    // JSONEncoder writes `Data` as base64 and dates as ISO 8601.

    static let insertDevices = """
        WITH rows AS (
            INSERT INTO devices (
                id, serial_number, identity_cert, unlock_token, unlock_token_at, authenticate, authenticate_at,
                bootstrap_token, bootstrap_token_at, created_at, updated_at
            )
            SELECT r.id, r."serialNumber", decode(r."identityCert", 'base64'), decode(r."unlockToken", 'base64'),
                r."unlockTokenAt", decode(r.authenticate, 'base64'), r."authenticateAt",
                decode(r."bootstrapToken", 'base64'), r."bootstrapTokenAt",
                coalesce(r."createdAt", now()), coalesce(r."updatedAt", now())
            FROM jsonb_to_recordset($1::jsonb) AS r(
                id text, "serialNumber" text, "identityCert" text, "unlockToken" text, "unlockTokenAt" timestamptz,
                authenticate text, "authenticateAt" timestamptz, "bootstrapToken" text,
                "bootstrapTokenAt" timestamptz, "createdAt" timestamptz, "updatedAt" timestamptz
            )
            ON CONFLICT (id) DO NOTHING
            RETURNING 1
        )
        SELECT count(*)::int FROM rows
        """

    static let insertEnrollments = """
        WITH rows AS (
            INSERT INTO enrollments (
                id, device_id, type, parent_id, user_id, user_short_name, user_long_name, topic, push_magic,
                token_hex, enabled, token_update_tally, token_update, token_update_at, last_seen_at,
                created_at, updated_at
            )
            SELECT r.id, r."deviceID", r.type, r."parentID", r."userID", r."userShortName", r."userLongName",
                r.topic, r."pushMagic", r."tokenHex", r.enabled, r."tokenUpdateTally",
                decode(r."tokenUpdate", 'base64'), r."tokenUpdateAt", r."lastSeenAt",
                coalesce(r."createdAt", now()), coalesce(r."updatedAt", now())
            FROM jsonb_to_recordset($1::jsonb) AS r(
                id text, "deviceID" text, type text, "parentID" text, "userID" text, "userShortName" text,
                "userLongName" text, topic text, "pushMagic" text, "tokenHex" text, enabled boolean,
                "tokenUpdateTally" integer, "tokenUpdate" text, "tokenUpdateAt" timestamptz,
                "lastSeenAt" timestamptz, "createdAt" timestamptz, "updatedAt" timestamptz
            )
            ON CONFLICT (id) DO NOTHING
            RETURNING 1
        )
        SELECT count(*)::int FROM rows
        """

    static let insertBindings = """
        WITH rows AS (
            INSERT INTO certificate_bindings (sha256, device_id, created_at)
            SELECT decode(r.sha256, 'hex'), r."deviceID", coalesce(r."createdAt", now())
            FROM jsonb_to_recordset($1::jsonb) AS r(sha256 text, "deviceID" text, "createdAt" timestamptz)
            WHERE EXISTS (SELECT 1 FROM devices d WHERE d.id = r."deviceID")
            ON CONFLICT (sha256) DO NOTHING
            RETURNING 1
        )
        SELECT count(*)::int FROM rows
        """

    static let insertCommands = """
        WITH rows AS (
            INSERT INTO commands (command_uuid, request_type, command, created_at)
            SELECT r."commandUUID", r."requestType", decode(r.command, 'base64'), coalesce(r."createdAt", now())
            FROM jsonb_to_recordset($1::jsonb) AS r(
                "commandUUID" text, "requestType" text, command text, "createdAt" timestamptz
            )
            ON CONFLICT (command_uuid) DO NOTHING
            RETURNING 1
        )
        SELECT count(*)::int FROM rows
        """

    // Entries for enrollments or commands that did not come across are skipped (no foreign keys
    // on queue_entries would stop them).
    static let insertQueueEntries = """
        WITH rows AS (
            INSERT INTO queue_entries (
                enrollment_id, command_uuid, priority, state, not_now_at, not_now_count, created_at, updated_at
            )
            SELECT r."enrollmentID", r."commandUUID", r.priority, r.state, r."notNowAt", r."notNowCount",
                coalesce(r."createdAt", now()), coalesce(r."updatedAt", now())
            FROM ROWS FROM (
                jsonb_to_recordset($1::jsonb) AS (
                    "enrollmentID" text, "commandUUID" text, priority smallint, state text, "notNowAt" timestamptz,
                    "notNowCount" integer, "createdAt" timestamptz, "updatedAt" timestamptz
                )
            ) WITH ORDINALITY AS r(
                "enrollmentID", "commandUUID", priority, state, "notNowAt", "notNowCount", "createdAt", "updatedAt", n
            )
            WHERE EXISTS (SELECT 1 FROM enrollments e WHERE e.id = r."enrollmentID")
                AND EXISTS (SELECT 1 FROM commands c WHERE c.command_uuid = r."commandUUID")
            ORDER BY r.n
            ON CONFLICT (enrollment_id, command_uuid) DO NOTHING
            RETURNING 1
        )
        SELECT count(*)::int FROM rows
        """

    static let insertResults = """
        WITH rows AS (
            INSERT INTO command_results (enrollment_id, command_uuid, status, result, created_at, updated_at)
            SELECT r."enrollmentID", r."commandUUID", r.status, decode(r.result, 'base64'),
                coalesce(r."createdAt", now()), coalesce(r."updatedAt", now())
            FROM jsonb_to_recordset($1::jsonb) AS r(
                "enrollmentID" text, "commandUUID" text, status text, result text, "createdAt" timestamptz,
                "updatedAt" timestamptz
            )
            WHERE EXISTS (
                SELECT 1 FROM queue_entries q
                WHERE q.enrollment_id = r."enrollmentID" AND q.command_uuid = r."commandUUID"
            )
            ON CONFLICT (enrollment_id, command_uuid) DO NOTHING
            RETURNING 1
        )
        SELECT count(*)::int FROM rows
        """
}
