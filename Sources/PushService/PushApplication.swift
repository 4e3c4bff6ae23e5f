import Hummingbird
import Logging
import MDMBus
import MDMServerSupport
import MDMStorage
import MDMWebhook
import ServiceLifecycle

extension APNsClient: APNsSending {}

/// Builds PushService: the seam tests use. `sender` replaces the APNs client (tests).
func buildPushApplication(
    configuration: PushConfiguration,
    logger: Logger,
    metrics: MDMMetrics = .process,
    onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }
) throws -> some ApplicationProtocol {
    let redis = try RedisClient(configuration: configuration.redis, logger: logger)
    return try RoleApplication.build(
        server: configuration.server,
        logger: logger,
        metrics: metrics,
        readinessChecks: [.redis(redis)],
        services: { database in
            let apns = try APNsClient(
                configuration: configuration.apns,
                certificates: PostgresPushCertificateStore(
                    client: database,
                    logger: logger,
                    keyEncryptionKey: configuration.pushKeyEncryptionKey?.symmetricKey
                ),
                logger: logger
            )
            let store = PostgresPushStore(client: database, logger: logger)
            let worker = PushWorker(
                bus: RedisPushBus(client: redis, stream: configuration.stream, logger: logger),
                store: store,
                handler: PushHandler(
                    store: store,
                    sender: apns,
                    redriveAfter: configuration.worker.redriveAfter,
                    maxConcurrentPushes: configuration.maxConcurrentPushes,
                    expiration: configuration.pushExpiration,
                    metrics: metrics,
                    logger: logger
                ),
                settings: configuration.worker,
                metrics: metrics,
                logger: logger
            )
            // The webhook outbox is delivered here too (decision 0004): the background role.
            let webhook = configuration.webhook.map {
                WebhookWorker(configuration: $0, database: database, logger: logger) as any Service
            }
            return [redis, APNsClientService(client: apns), worker] + (webhook.map { [$0] } ?? [])
        },
        onServerRunning: onServerRunning,
        routes: { _, _ in }
    )
}

/// Closes the APNs connections at shutdown, after the worker (listed later) has stopped.
struct APNsClientService: Service {
    var client: APNsClient

    func run() async throws {
        try? await gracefulShutdown()
        await client.shutdown()
    }
}
