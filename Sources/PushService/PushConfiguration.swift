import Foundation
import MDMBus
import MDMServerSupport
import MDMStorage
import MDMWebhook

/// PushService settings.
struct PushConfiguration: Sendable {
    var server: ServerConfiguration
    var redis: RedisConfiguration
    /// The push request stream (`MDM_PUSH_STREAM`).
    var stream = RedisPushBus.defaultStream
    var apns: APNsConfiguration
    var worker: PushWorkerSettings
    /// Webhook delivery (`MDM_WEBHOOK_URL`): PushService runs the delivery worker.
    var webhook: WebhookConfiguration?
    /// Opens push-certificate private keys sealed at rest (`MDM_PUSH_KEY_ENCRYPTION_KEY`).
    var pushKeyEncryptionKey: PushKeyEncryptionKey?
    /// Pushes in flight at once per consumer batch.
    var maxConcurrentPushes = 1000
    /// How long APNs keeps a push for an offline device (`MDM_PUSH_EXPIRATION`); `nil` sends
    /// no `apns-expiration`.
    var pushExpiration: Duration?

    static let defaultPort = 9003

    init(server: ServerConfiguration, redis: RedisConfiguration, apns: APNsConfiguration, worker: PushWorkerSettings) {
        self.server = server
        self.redis = redis
        self.apns = apns
        self.worker = worker
    }

    init(settings: Settings) throws(ConfigurationError) {
        server = try ServerConfiguration(settings: settings, defaultPort: Self.defaultPort)
        guard let redis = try settings.redisConfiguration() else {
            throw ConfigurationError(setting: "MDM_REDIS_URL", problem: "required (or MDM_REDIS_URL_FILE)")
        }
        self.redis = redis
        stream = settings.string("MDM_PUSH_STREAM", default: stream)
        apns = try APNsConfiguration(settings: settings)
        pushKeyEncryptionKey = try settings.pushKeyEncryptionKey()
        webhook = try WebhookConfiguration(settings: settings)
        worker = PushWorkerSettings(
            consumerName: settings.string("MDM_PUSH_CONSUMER_NAME") ?? PushWorkerSettings.uniqueConsumerName())
        worker.consumers = try settings.int("MDM_PUSH_CONSUMERS", default: worker.consumers, range: 1...64)
        worker.batchSize = try settings.int("MDM_PUSH_BATCH_SIZE", default: worker.batchSize, range: 1...1000)
        worker.coalesceWindow = try settings.seconds("MDM_PUSH_COALESCE_WINDOW", default: worker.coalesceWindow)
        worker.reclaimIdle = try settings.seconds("MDM_PUSH_RECLAIM_IDLE", default: worker.reclaimIdle)
        worker.reclaimInterval = try settings.seconds("MDM_PUSH_RECLAIM_INTERVAL", default: worker.reclaimInterval)
        worker.redriveInterval = try settings.seconds("MDM_PUSH_REDRIVE_INTERVAL", default: worker.redriveInterval)
        worker.redriveAfter = try settings.seconds("MDM_PUSH_REDRIVE_AFTER", default: worker.redriveAfter)
        worker.redriveMaxAttempts = try settings.int(
            "MDM_PUSH_MAX_ATTEMPTS", default: worker.redriveMaxAttempts, range: 1...10_000)
        maxConcurrentPushes = try settings.int(
            "MDM_PUSH_CONCURRENCY", default: maxConcurrentPushes, range: 1...100_000)
        if settings.string("MDM_PUSH_EXPIRATION") != nil {
            let expiration = try settings.seconds("MDM_PUSH_EXPIRATION", default: .zero)
            guard expiration >= .zero else {
                throw ConfigurationError(setting: "MDM_PUSH_EXPIRATION", problem: "must be 0 or more")
            }
            pushExpiration = expiration
        }
        for (name, value) in [
            ("MDM_PUSH_RECLAIM_IDLE", worker.reclaimIdle), ("MDM_PUSH_RECLAIM_INTERVAL", worker.reclaimInterval),
            ("MDM_PUSH_REDRIVE_INTERVAL", worker.redriveInterval), ("MDM_PUSH_REDRIVE_AFTER", worker.redriveAfter),
        ] where value <= .zero {
            throw ConfigurationError(setting: name, problem: "must be greater than 0")
        }
    }
}
