/// Every setting a role reads, documented once. `docs/operations.md` mirrors this table (a
/// test keeps them in step) and unknown flags are refused against it.
package struct SettingDescription: Sendable {
    package var name: String
    package var defaultValue: String
    package var roles: String
    package var summary: String
}

package enum SettingCatalogue {
    package static let all: [SettingDescription] = [
        .init(
            name: "MDM_LISTEN", defaultValue: "127.0.0.1:<role port>", roles: "all",
            summary: "host:port to serve on (API 9000, checkin 9001, command 9002, push 9003)"),
        .init(
            name: "MDM_DATABASE_URL", defaultValue: "postgres://postgres@127.0.0.1:5432/mdm?sslmode=disable",
            roles: "all", summary: "PostgreSQL URL; also MDM_DATABASE_URL_FILE"),
        .init(
            name: "MDM_DATABASE_POOL_SIZE", defaultValue: "20", roles: "all",
            summary: "maximum PostgreSQL connections per process"),
        .init(
            name: "MDM_DATABASE_STARTUP_TIMEOUT", defaultValue: "60", roles: "all",
            summary: "seconds to wait for PostgreSQL at start before exiting"),
        .init(
            name: "MDM_LOG_LEVEL", defaultValue: "info", roles: "all",
            summary: "trace, debug, info, notice, warning, error, critical"),
        .init(
            name: "MDM_LOG_FORMAT", defaultValue: "text", roles: "all",
            summary: "text (human-readable lines) or json (one JSON object per line)"),
        .init(
            name: "MDM_SHUTDOWN_GRACE_SECONDS", defaultValue: "25", roles: "all",
            summary: "seconds a SIGTERM/SIGINT drain may take before remaining work is abandoned"),
        .init(
            name: "MDM_PORT_FILE", defaultValue: "", roles: "all",
            summary: "file the role writes its listening port to once it serves"),
        .init(
            name: "MDM_MAX_BODY_BYTES", defaultValue: "33554432", roles: "all",
            summary: "largest request body; larger ones get 413"),
        .init(
            name: "MDM_IDENTITY_MODE", defaultValue: "signature", roles: "checkin, command",
            summary: "signature (Mdm-Signature), header (proxy-forwarded certificate) or either"),
        .init(
            name: "MDM_CERT_HEADER", defaultValue: "X-Client-Cert", roles: "checkin, command",
            summary: "header with the forwarded client certificate (RFC 9440 or URL-escaped PEM)"),
        .init(
            name: "MDM_CA_CERTS", defaultValue: "(required)", roles: "checkin, command",
            summary: "PEM file of CAs that issue device identity certificates"),
        .init(
            name: "MDM_INTERMEDIATE_CERTS", defaultValue: "", roles: "checkin, command",
            summary: "PEM file of intermediate CAs"),
        .init(
            name: "MDM_CERT_RETRO", defaultValue: "false", roles: "checkin, command",
            summary: "bind a certificate on first sight when neither device nor hash has a binding"),
        .init(
            name: "MDM_DDM_URL", defaultValue: "", roles: "checkin",
            summary: "DDM server base URL; DeclarativeManagement check-ins are forwarded there"),
        .init(
            name: "MDM_DDM_HEADERS", defaultValue: "", roles: "checkin",
            summary: "extra headers for the DDM server, newline-separated `Name: value`"),
        .init(
            name: "MDM_DDM_HMAC_KEY", defaultValue: "", roles: "checkin",
            summary: "sign DDM requests with X-Hmac-Signature; also MDM_DDM_HMAC_KEY_FILE"),
        .init(
            name: "MDM_DDM_TIMEOUT", defaultValue: "30", roles: "checkin",
            summary: "seconds before a DDM request fails"),
        .init(
            name: "MDM_USER_AUTH_ZERO_CHALLENGE", defaultValue: "false", roles: "checkin",
            summary: "answer UserAuthenticate with a zero-length digest challenge instead of 410"),
        .init(
            name: "MDM_GETTOKEN_FORWARD", defaultValue: "", roles: "checkin",
            summary: "GetToken forwarders: `type=url,type=url`"),
        .init(
            name: "MDM_AUTHPROXY_URL", defaultValue: "", roles: "checkin",
            summary: "upstream for /authproxy/…: bound devices' requests go there with X-Enrollment-ID"),
        .init(
            name: "MDM_API_KEY", defaultValue: "(required)", roles: "api",
            summary: "API key (Basic nanomdm:<key> or Bearer <key>); also MDM_API_KEY_FILE"),
        .init(
            name: "MDM_REDIS_URL", defaultValue: "", roles: "api, push",
            summary:
                "Redis URL (redis:// or rediss://, ?pool_size, ?connect_timeout_ms, ?command_timeout_ms); required for push; also MDM_REDIS_URL_FILE"
        ),
        .init(
            name: "MDM_ESCROW_KEY_UNLOCK_URL",
            defaultValue: "https://deviceservices-external.apple.com/deviceservicesworkers/escrowKeyUnlock",
            roles: "api", summary: "Apple's escrow key unlock endpoint for POST /v1/escrowkeyunlock"),
        .init(
            name: "MDM_ESCROW_KEY_UNLOCK_CA_CERTS", defaultValue: "", roles: "api",
            summary: "PEM file of trust roots for that endpoint instead of the system's"),
        .init(
            name: "MDM_MIGRATION_ENABLED", defaultValue: "false", roles: "api",
            summary: "serve PUT /migration: raw check-ins applied without identity checks"),
        .init(
            name: "MDM_NANOMDM_DATABASE_URL", defaultValue: "", roles: "api migrate-from-nanomdm",
            summary: "NanoMDM PostgreSQL database to import from; also MDM_NANOMDM_DATABASE_URL_FILE"),
        .init(
            name: "MDM_DRY_RUN", defaultValue: "false", roles: "api migrate-from-nanomdm",
            summary: "run the import and report what it would do, then roll it back"),
        .init(
            name: "MDM_PUSH_STREAM", defaultValue: "mdm:push:requests", roles: "api, push",
            summary: "Redis stream of push requests (its consumer group is mdm:push:workers)"),
        .init(
            name: "MDM_PUSH_WAIT_TIMEOUT", defaultValue: "10", roles: "api",
            summary: "seconds an enqueue or push request waits for push outcomes (unless ?async=1)"),
        .init(
            name: "MDM_PUSH_REDRIVE_AFTER", defaultValue: "60", roles: "api, push",
            summary: "seconds an owed push is left to the bus (or after a failure) before the outbox re-drives it"),
        .init(
            name: "MDM_PUSH_CONSUMER_NAME", defaultValue: "<host>-<pid>-<random>", roles: "push",
            summary: "consumer name prefix in the Redis consumer group"),
        .init(
            name: "MDM_PUSH_CONSUMERS", defaultValue: "2", roles: "push",
            summary: "concurrent stream consumers per process"),
        .init(
            name: "MDM_PUSH_BATCH_SIZE", defaultValue: "16", roles: "push",
            summary: "stream entries (of up to 500 enrollments each) read at once by a consumer"),
        .init(
            name: "MDM_PUSH_COALESCE_WINDOW", defaultValue: "0.02", roles: "push",
            summary: "seconds a consumer keeps reading after the first entry, so pushes for one enrollment coalesce"),
        .init(
            name: "MDM_PUSH_EXPIRATION", defaultValue: "", roles: "push",
            summary:
                "seconds APNs keeps a push for an offline device (apns-expiration); 0 delivers now or never; unset leaves it to APNs"
        ),
        .init(
            name: "MDM_PUSH_CONCURRENCY", defaultValue: "1000", roles: "push",
            summary: "APNs requests in flight per consumer batch"),
        .init(
            name: "MDM_PUSH_RECLAIM_IDLE", defaultValue: "30", roles: "push",
            summary: "seconds before entries another consumer did not acknowledge are taken over"),
        .init(
            name: "MDM_PUSH_RECLAIM_INTERVAL", defaultValue: "5", roles: "push",
            summary: "seconds between scans for such entries"),
        .init(
            name: "MDM_PUSH_REDRIVE_INTERVAL", defaultValue: "5", roles: "push",
            summary: "seconds between outbox scans for owed pushes"),
        .init(
            name: "MDM_PUSH_MAX_ATTEMPTS", defaultValue: "20", roles: "push",
            summary: "failed APNs attempts after which an owed push is dropped"),
        .init(
            name: "MDM_PUSH_KEY_ENCRYPTION_KEY", defaultValue: "", roles: "api, push",
            summary: "base64 of 32 bytes: seals push-certificate private keys at rest (AES-256-GCM); also _FILE"),
        .init(
            name: "MDM_APNS_URL", defaultValue: "https://api.push.apple.com", roles: "push",
            summary: "APNs base URL (sandbox: https://api.sandbox.push.apple.com)"),
        .init(
            name: "MDM_APNS_CA_CERTS", defaultValue: "", roles: "push",
            summary: "PEM file of CAs trusted for APNs in addition to the system roots"),
        .init(
            name: "MDM_APNS_MAX_ATTEMPTS", defaultValue: "4", roles: "push",
            summary: "requests per push at most (429, 5xx and one dropped connection are retried)"),
        .init(
            name: "MDM_APNS_RETRY_BASE_DELAY", defaultValue: "0.5", roles: "push",
            summary: "seconds before the first retry after 429 or 5xx; doubles per retry, with jitter"),
        .init(
            name: "MDM_APNS_RETRY_MAX_DELAY", defaultValue: "10", roles: "push",
            summary: "longest wait between retries, in seconds"),
        .init(
            name: "MDM_APNS_TIMEOUT", defaultValue: "30", roles: "push",
            summary: "seconds one APNs request may take, connecting included"),
        .init(
            name: "MDM_WEBHOOK_URL", defaultValue: "", roles: "checkin, command, push",
            summary: "webhook receiver; when set, check-ins and reports record events and push delivers them"),
        .init(
            name: "MDM_WEBHOOK_HMAC_KEY", defaultValue: "", roles: "push",
            summary: "sign webhook requests with X-Hmac-Signature; also MDM_WEBHOOK_HMAC_KEY_FILE"),
        .init(
            name: "MDM_WEBHOOK_TIMEOUT", defaultValue: "10", roles: "push",
            summary: "seconds before one webhook delivery attempt fails"),
        .init(
            name: "MDM_WEBHOOK_CONCURRENCY", defaultValue: "16", roles: "push",
            summary: "webhook deliveries in flight per process (one per enrollment at a time)"),
        .init(
            name: "MDM_WEBHOOK_RETRY_MIN", defaultValue: "1", roles: "push",
            summary: "seconds before the first webhook retry; doubles per attempt"),
        .init(
            name: "MDM_WEBHOOK_RETRY_MAX", defaultValue: "300", roles: "push",
            summary: "longest wait between webhook retries, seconds"),
        .init(
            name: "MDM_WEBHOOK_MAX_AGE", defaultValue: "86400", roles: "push",
            summary: "seconds an event may stay undelivered before it becomes a dead letter"),
        .init(
            name: "MDM_WEBHOOK_MAX_ATTEMPTS", defaultValue: "0", roles: "push",
            summary: "attempts before an event becomes a dead letter; 0: only the age counts"),
        .init(
            name: "MDM_WEBHOOK_RETENTION", defaultValue: "86400", roles: "push",
            summary: "seconds delivered events are kept"),
        .init(
            name: "MDM_WEBHOOK_DEAD_RETENTION", defaultValue: "604800", roles: "push",
            summary: "seconds dead letters are kept"),
        .init(
            name: "MDM_WEBHOOK_POLL_INTERVAL", defaultValue: "1", roles: "push",
            summary: "seconds an idle webhook worker waits before looking for new events"),
    ]

    package static var names: Set<String> {
        var names = Set(all.map(\.name))
        for setting in all
        where [
            "MDM_DATABASE_URL", "MDM_DDM_HMAC_KEY", "MDM_API_KEY", "MDM_PUSH_KEY_ENCRYPTION_KEY", "MDM_REDIS_URL",
            "MDM_NANOMDM_DATABASE_URL", "MDM_WEBHOOK_HMAC_KEY",
        ].contains(setting.name) {
            names.insert(setting.name + "_FILE")
        }
        return names
    }
}
