import Foundation
import MDMServerSupport
import MDMStorage

/// Where webhook events go and how hard delivery tries (docs/operations.md, "Webhook").
package struct WebhookConfiguration: Sendable, CustomStringConvertible {
    /// The receiver. Never logged whole: it may carry credentials.
    package var url: URL
    /// When set, requests carry `X-Hmac-Signature: base64(HMAC-SHA256(key, body))`.
    package var hmacKey: [UInt8]?
    /// Bounds one delivery attempt, connection included.
    package var timeout: Duration
    /// Deliveries in flight per worker; each is a different enrollment.
    package var concurrency: Int
    /// The first retry waits this long; each further one twice as long, up to `retryMaximum`.
    package var retryMinimum: Duration
    package var retryMaximum: Duration
    package var expiry: WebhookExpiry
    /// Delivered events are deleted this long after they were recorded.
    package var retention: Duration
    /// Dead letters are deleted this long after they were recorded.
    package var deadRetention: Duration
    /// How often an idle worker looks for new events.
    package var pollInterval: Duration
    /// How long a claimed event belongs to its worker. Past it, another worker may deliver the
    /// event again (its worker is presumed dead), so it must exceed `timeout` comfortably.
    package var lease: Duration
    /// How often retention runs and the summary is logged.
    package var maintenanceInterval: Duration

    package init(
        url: URL,
        hmacKey: [UInt8]? = nil,
        timeout: Duration = .seconds(10),
        concurrency: Int = 16,
        retryMinimum: Duration = .seconds(1),
        retryMaximum: Duration = .seconds(300),
        expiry: WebhookExpiry = WebhookExpiry(maxAge: .seconds(86_400), maxAttempts: nil),
        retention: Duration = .seconds(86_400),
        deadRetention: Duration = .seconds(7 * 86_400),
        pollInterval: Duration = .seconds(1),
        lease: Duration? = nil,
        maintenanceInterval: Duration = .seconds(60)
    ) {
        self.url = url
        self.hmacKey = hmacKey
        self.timeout = timeout
        self.concurrency = concurrency
        self.retryMinimum = retryMinimum
        self.retryMaximum = retryMaximum
        self.expiry = expiry
        self.retention = retention
        self.deadRetention = deadRetention
        self.pollInterval = pollInterval
        self.lease = lease ?? timeout + .seconds(30)
        self.maintenanceInterval = maintenanceInterval
    }

    /// Reads the `MDM_WEBHOOK_*` settings; `nil` when `MDM_WEBHOOK_URL` is not set.
    package init?(settings: Settings) throws(ConfigurationError) {
        guard let url = try Self.url(settings: settings) else { return nil }
        let maxAttempts = try settings.int("MDM_WEBHOOK_MAX_ATTEMPTS", default: 0, range: 0...1_000_000)
        self.init(
            url: url,
            hmacKey: try settings.secret("MDM_WEBHOOK_HMAC_KEY").map { Array($0.utf8) },
            timeout: try Self.seconds(settings, "MDM_WEBHOOK_TIMEOUT", default: 10, minimum: 0.1),
            concurrency: try settings.int("MDM_WEBHOOK_CONCURRENCY", default: 16, range: 1...1024),
            retryMinimum: try Self.seconds(settings, "MDM_WEBHOOK_RETRY_MIN", default: 1, minimum: 0.01),
            retryMaximum: try Self.seconds(settings, "MDM_WEBHOOK_RETRY_MAX", default: 300, minimum: 0.01),
            expiry: WebhookExpiry(
                maxAge: try Self.seconds(settings, "MDM_WEBHOOK_MAX_AGE", default: 86_400, minimum: 1),
                maxAttempts: maxAttempts == 0 ? nil : maxAttempts
            ),
            retention: try Self.seconds(settings, "MDM_WEBHOOK_RETENTION", default: 86_400, minimum: 0),
            deadRetention: try Self.seconds(settings, "MDM_WEBHOOK_DEAD_RETENTION", default: 7 * 86_400, minimum: 0),
            pollInterval: try Self.seconds(settings, "MDM_WEBHOOK_POLL_INTERVAL", default: 1, minimum: 0.01)
        )
        if retryMaximum < retryMinimum {
            throw ConfigurationError(setting: "MDM_WEBHOOK_RETRY_MAX", problem: "smaller than MDM_WEBHOOK_RETRY_MIN")
        }
    }

    /// Safe to log: the receiver's host, and whether requests are signed.
    package var description: String {
        "WebhookConfiguration(host: \(url.host ?? ""), signed: \(hmacKey != nil), timeout: \(timeout), "
            + "concurrency: \(concurrency), retry: \(retryMinimum)…\(retryMaximum), expiry: \(expiry))"
    }

    /// Whether the recording roles (CheckinService, CommandService) record events: only when a
    /// receiver is configured, so a deployment without a webhook pays nothing for it.
    package static func isEnabled(settings: Settings) throws(ConfigurationError) -> Bool {
        try url(settings: settings) != nil
    }

    private static func url(settings: Settings) throws(ConfigurationError) -> URL? {
        guard let raw = settings.string("MDM_WEBHOOK_URL") else { return nil }
        guard let url = URL(string: raw), let scheme = url.scheme?.lowercased(), ["http", "https"].contains(scheme),
            url.host != nil
        else {
            // The value may hold credentials: name the problem, not the value.
            throw ConfigurationError(setting: "MDM_WEBHOOK_URL", problem: "not an http(s) URL")
        }
        return url
    }

    private static func seconds(_ settings: Settings, _ name: String, default value: Double, minimum: Double)
        throws(ConfigurationError) -> Duration
    {
        let seconds = try settings.double(name, default: value)
        guard seconds >= minimum else {
            throw ConfigurationError(setting: name, problem: "must be at least \(minimum) seconds")
        }
        return .milliseconds(Int64(seconds * 1000))
    }

    /// The wait before the next attempt after `attempts` failed ones: doubling from
    /// `retryMinimum`, capped at `retryMaximum`, less up to a fifth at random so the retries
    /// of many enrollments spread out instead of arriving together.
    package func retryDelay(afterAttempts attempts: Int) -> Duration {
        let doublings = min(max(attempts - 1, 0), 40)
        let uncapped = retryMinimum.secondsValue * pow(2, Double(doublings))
        let capped = min(uncapped, retryMaximum.secondsValue)
        let jittered = capped * Double.random(in: 0.8...1.0)
        return .milliseconds(Int64(jittered * 1000))
    }
}
