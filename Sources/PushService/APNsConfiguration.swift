import Foundation
import MDMServerSupport
import NIOSSL

/// Settings of the APNs client (PROTOCOL.md §6).
struct APNsConfiguration: Sendable {
    /// Production APNs; the sandbox is `https://api.sandbox.push.apple.com`.
    static let productionURL = "https://api.push.apple.com"

    /// Scheme, host and optional port, without a trailing slash.
    var baseURL: String
    /// Trusted in addition to the system roots (a test server's CA, or a TLS-inspecting proxy's).
    var additionalTrustRoots: [NIOSSLCertificate]
    /// Requests per push at most, the first included: 429 and 5xx answers are retried until then, and so is
    /// one dropped connection.
    var maxAttempts: Int
    /// The first backoff after a 429 or 5xx; each further one doubles, up to `retryMaxDelay`, with jitter.
    var retryBaseDelay: Duration
    var retryMaxDelay: Duration
    /// One attempt, from queueing for a stream (and connecting) to the end of the answer.
    var requestTimeout: Duration
    /// How long a topic without a usable certificate answers `.failed` from memory before the store is
    /// asked again (a push carrying a newer certificate version asks at once).
    var certificateMissRetention: Duration

    init(
        baseURL: String = APNsConfiguration.productionURL,
        additionalTrustRoots: [NIOSSLCertificate] = [],
        maxAttempts: Int = 4,
        retryBaseDelay: Duration = .milliseconds(500),
        retryMaxDelay: Duration = .seconds(10),
        requestTimeout: Duration = .seconds(30),
        certificateMissRetention: Duration = .seconds(5)
    ) {
        self.baseURL = baseURL
        self.additionalTrustRoots = additionalTrustRoots
        self.maxAttempts = maxAttempts
        self.retryBaseDelay = retryBaseDelay
        self.retryMaxDelay = retryMaxDelay
        self.requestTimeout = requestTimeout
        self.certificateMissRetention = certificateMissRetention
    }

    /// Reads `MDM_APNS_URL`, `MDM_APNS_CA_CERTS`, `MDM_APNS_MAX_ATTEMPTS`, `MDM_APNS_RETRY_BASE_DELAY`,
    /// `MDM_APNS_RETRY_MAX_DELAY` and `MDM_APNS_TIMEOUT`.
    init(settings: Settings) throws(ConfigurationError) {
        let url = settings.string("MDM_APNS_URL", default: Self.productionURL)
        guard let baseURL = Self.normalizedBaseURL(url) else {
            throw ConfigurationError(
                setting: "MDM_APNS_URL", problem: "expected https://host[:port] without a path, got \(url)")
        }
        var trustRoots: [NIOSSLCertificate] = []
        if let path = settings.string("MDM_APNS_CA_CERTS") {
            do {
                trustRoots = try NIOSSLCertificate.fromPEMFile(path)
            } catch {
                throw ConfigurationError(
                    setting: "MDM_APNS_CA_CERTS", problem: "cannot read PEM certificates from \(path)")
            }
            guard !trustRoots.isEmpty else {
                throw ConfigurationError(setting: "MDM_APNS_CA_CERTS", problem: "no certificates in \(path)")
            }
        }
        let baseDelay = try settings.double("MDM_APNS_RETRY_BASE_DELAY", default: 0.5)
        let maxDelay = try settings.double("MDM_APNS_RETRY_MAX_DELAY", default: 10)
        guard maxDelay >= baseDelay else {
            throw ConfigurationError(
                setting: "MDM_APNS_RETRY_MAX_DELAY", problem: "\(maxDelay) is below MDM_APNS_RETRY_BASE_DELAY")
        }
        let timeout = try settings.double("MDM_APNS_TIMEOUT", default: 30)
        guard timeout > 0 else {
            throw ConfigurationError(setting: "MDM_APNS_TIMEOUT", problem: "must be more than 0 seconds")
        }
        self.init(
            baseURL: baseURL,
            additionalTrustRoots: trustRoots,
            maxAttempts: try settings.int("MDM_APNS_MAX_ATTEMPTS", default: 4, range: 1...20),
            retryBaseDelay: .seconds(baseDelay),
            retryMaxDelay: .seconds(maxDelay),
            requestTimeout: .seconds(timeout)
        )
    }

    /// `https://host[:port]` with any trailing slash removed; `nil` for anything else, because the client
    /// appends `/3/device/<token>` to it.
    static func normalizedBaseURL(_ value: String) -> String? {
        var trimmed = value.trimmingCharacters(in: .whitespaces)
        while trimmed.hasSuffix("/") {
            trimmed.removeLast()
        }
        guard
            let components = URLComponents(string: trimmed),
            components.scheme?.lowercased() == "https",
            let host = components.host, !host.isEmpty,
            components.path.isEmpty, components.query == nil, components.fragment == nil,
            components.user == nil
        else {
            return nil
        }
        return trimmed
    }
}
