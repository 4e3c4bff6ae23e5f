import Foundation
import MDMServerSupport
import MDMWebhook

/// CheckinService settings beyond the shared ones.
struct CheckinConfiguration: Sendable {
    var server: ServerConfiguration
    var identity: DeviceIdentityConfiguration
    var declarativeManagement: DeclarativeManagementConfiguration?
    /// Answer the first `UserAuthenticate` with a zero-length digest challenge instead of 410.
    var userAuthenticateZeroLengthChallenge: Bool
    /// `TokenServiceType` → URL that `GetToken` requests are forwarded to.
    var getTokenForwarding: [String: URL]
    /// Where `/authproxy/…` requests of bound devices go (`MDM_AUTHPROXY_URL`); off when `nil`.
    var authProxyURL: URL?
    /// Record a webhook event with every accepted check-in (`MDM_WEBHOOK_URL` is set).
    var recordWebhookEvents: Bool

    static let defaultPort = 9001

    init(
        server: ServerConfiguration,
        identity: DeviceIdentityConfiguration,
        declarativeManagement: DeclarativeManagementConfiguration? = nil,
        userAuthenticateZeroLengthChallenge: Bool = false,
        getTokenForwarding: [String: URL] = [:],
        recordWebhookEvents: Bool = false
    ) {
        self.server = server
        self.identity = identity
        self.declarativeManagement = declarativeManagement
        self.userAuthenticateZeroLengthChallenge = userAuthenticateZeroLengthChallenge
        self.getTokenForwarding = getTokenForwarding
        self.recordWebhookEvents = recordWebhookEvents
    }

    init(settings: Settings) throws(ConfigurationError) {
        self.init(
            server: try ServerConfiguration(settings: settings, defaultPort: Self.defaultPort),
            identity: try DeviceIdentityConfiguration(settings: settings),
            declarativeManagement: try DeclarativeManagementConfiguration(settings: settings),
            userAuthenticateZeroLengthChallenge: try settings.bool("MDM_USER_AUTH_ZERO_CHALLENGE", default: false),
            getTokenForwarding: try Self.parseForwarding(settings.string("MDM_GETTOKEN_FORWARD")),
            recordWebhookEvents: try WebhookConfiguration.isEnabled(settings: settings)
        )
        if let raw = settings.string("MDM_AUTHPROXY_URL") {
            guard let url = URL(string: raw), let scheme = url.scheme, ["http", "https"].contains(scheme) else {
                throw ConfigurationError(setting: "MDM_AUTHPROXY_URL", problem: "not an http(s) URL: \(raw)")
            }
            authProxyURL = url
        }
    }

    /// `type=url,type=url`.
    static func parseForwarding(_ value: String?) throws(ConfigurationError) -> [String: URL] {
        guard let value else { return [:] }
        var result: [String: URL] = [:]
        for entry in value.split(separator: ",") {
            let parts = entry.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard parts.count == 2, !parts[0].isEmpty, let url = URL(string: parts[1]), url.scheme != nil else {
                throw ConfigurationError(setting: "MDM_GETTOKEN_FORWARD", problem: "expected type=url, got \(entry)")
            }
            result[parts[0]] = url
        }
        return result
    }
}

/// Where `DeclarativeManagement` check-ins are forwarded.
struct DeclarativeManagementConfiguration: Sendable {
    /// The DDM server's base URL; the message's `Endpoint` is resolved against it.
    var baseURL: URL
    /// Extra headers sent upstream (for example an Authorization header).
    var headers: [(name: String, value: String)]
    /// When set, requests carry `X-Hmac-Signature: base64(HMAC-SHA256(key, body))`.
    var hmacKey: [UInt8]?
    var timeout: Duration

    init(
        baseURL: URL, headers: [(name: String, value: String)] = [], hmacKey: [UInt8]? = nil,
        timeout: Duration = .seconds(30)
    ) {
        self.baseURL = baseURL
        self.headers = headers
        self.hmacKey = hmacKey
        self.timeout = timeout
    }

    /// Reads `MDM_DDM_URL`, `MDM_DDM_HEADERS` (newline-separated `Name: value`),
    /// `MDM_DDM_HMAC_KEY`, `MDM_DDM_TIMEOUT` (seconds). `nil` when no URL is configured.
    init?(settings: Settings) throws(ConfigurationError) {
        guard let raw = settings.string("MDM_DDM_URL") else { return nil }
        guard var url = URL(string: raw), let scheme = url.scheme, ["http", "https"].contains(scheme) else {
            throw ConfigurationError(setting: "MDM_DDM_URL", problem: "not an http(s) URL: \(raw)")
        }
        // Endpoints are relative ("declaration-items"); resolve them inside the base path.
        if !url.absoluteString.hasSuffix("/"), let withSlash = URL(string: url.absoluteString + "/") {
            url = withSlash
        }
        var headers: [(name: String, value: String)] = []
        for line in (settings.string("MDM_DDM_HEADERS") ?? "").split(whereSeparator: \.isNewline) {
            guard let colon = line.firstIndex(of: ":") else {
                throw ConfigurationError(setting: "MDM_DDM_HEADERS", problem: "expected `Name: value` lines")
            }
            let name = line[..<colon].trimmingCharacters(in: .whitespaces)
            let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            headers.append((name, value))
        }
        let key = try settings.secret("MDM_DDM_HMAC_KEY").map { Array($0.utf8) }
        let seconds = try settings.double("MDM_DDM_TIMEOUT", default: 30)
        self.init(baseURL: url, headers: headers, hmacKey: key, timeout: .milliseconds(Int(seconds * 1000)))
    }
}
