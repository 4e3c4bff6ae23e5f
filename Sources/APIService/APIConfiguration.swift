import Foundation
import MDMBus
import MDMServerSupport
import MDMStorage
import NIOSSL

/// APIService settings.
struct APIConfiguration: Sendable {
    var server: ServerConfiguration
    var apiKey: String
    /// The push bus; without one, pushes are left to PushService's outbox re-drive.
    var redis: RedisConfiguration?
    /// The push request stream (`MDM_PUSH_STREAM`).
    var pushStream = RedisPushBus.defaultStream
    /// How long a request waits for push outcomes (unless `?async=1`).
    var pushWaitTimeout: Duration = .seconds(10)
    /// How long an owed push is left to the bus before the outbox re-drives it.
    var pushRedriveAfter: Duration = .seconds(60)

    /// Apple's escrow key unlock endpoint (`MDM_ESCROW_KEY_UNLOCK_URL`; tests point elsewhere).
    var escrowKeyUnlockURL = EscrowKeyUnlockController.appleEndpoint
    /// Trust roots for that endpoint instead of the system's (`MDM_ESCROW_KEY_UNLOCK_CA_CERTS`).
    var escrowKeyUnlockTrustRoots: [NIOSSLCertificate]?

    /// Serve `PUT /migration` (`MDM_MIGRATION_ENABLED`): off unless a migration is under way.
    var migrationEnabled = false

    static let defaultPort = 9000

    /// Seals push-certificate private keys at rest; `nil` stores them as plain PEM.
    var pushKeyEncryptionKey: PushKeyEncryptionKey?

    init(
        server: ServerConfiguration,
        apiKey: String,
        redis: RedisConfiguration? = nil,
        pushKeyEncryptionKey: PushKeyEncryptionKey? = nil
    ) {
        self.server = server
        self.apiKey = apiKey
        self.redis = redis
        self.pushKeyEncryptionKey = pushKeyEncryptionKey
    }

    init(settings: Settings) throws(ConfigurationError) {
        guard let key = try settings.secret("MDM_API_KEY") else {
            throw ConfigurationError(setting: "MDM_API_KEY", problem: "required (or MDM_API_KEY_FILE)")
        }
        guard key.count >= 8 else {
            throw ConfigurationError(setting: "MDM_API_KEY", problem: "must be at least 8 characters")
        }
        self.init(
            server: try ServerConfiguration(settings: settings, defaultPort: Self.defaultPort),
            apiKey: key,
            redis: try settings.redisConfiguration(),
            pushKeyEncryptionKey: try settings.pushKeyEncryptionKey()
        )
        pushStream = settings.string("MDM_PUSH_STREAM", default: pushStream)
        migrationEnabled = try settings.bool("MDM_MIGRATION_ENABLED", default: false)
        pushWaitTimeout = try settings.seconds("MDM_PUSH_WAIT_TIMEOUT", default: pushWaitTimeout)
        pushRedriveAfter = try settings.seconds("MDM_PUSH_REDRIVE_AFTER", default: pushRedriveAfter)
        escrowKeyUnlockURL = settings.string("MDM_ESCROW_KEY_UNLOCK_URL", default: escrowKeyUnlockURL)
        guard let url = URL(string: escrowKeyUnlockURL), url.scheme == "https" || url.scheme == "http" else {
            throw ConfigurationError(setting: "MDM_ESCROW_KEY_UNLOCK_URL", problem: "not an http(s) URL")
        }
        if let path = settings.string("MDM_ESCROW_KEY_UNLOCK_CA_CERTS") {
            do {
                escrowKeyUnlockTrustRoots = try NIOSSLCertificate.fromPEMFile(path)
            } catch {
                throw ConfigurationError(
                    setting: "MDM_ESCROW_KEY_UNLOCK_CA_CERTS", problem: "cannot read \(path): \(error)")
            }
        }
        guard pushRedriveAfter > .zero else {
            throw ConfigurationError(setting: "MDM_PUSH_REDRIVE_AFTER", problem: "must be greater than 0")
        }
    }
}
