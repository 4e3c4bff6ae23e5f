import Hummingbird
import Logging
import MDMBus
import MDMServerSupport
import MDMStorage
import PostgresNIO
import ServiceLifecycle

/// Builds APIService: the seam tests use.
func buildAPIApplication(
    configuration: APIConfiguration,
    logger: Logger,
    metrics: MDMMetrics = .process,
    onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }
) throws -> some ApplicationProtocol {
    let redis = try configuration.redis.map { try RedisClient(configuration: $0, logger: logger) }
    let bus = redis.map { RedisPushBus(client: $0, stream: configuration.pushStream, logger: logger) }
    let listener = bus.map { PushReplyListener(bus: $0, logger: logger) }
    let services: [any Service] = [redis as (any Service)?, listener].compactMap { $0 }
    return try RoleApplication.build(
        server: configuration.server,
        logger: logger,
        metrics: metrics,
        readinessChecks: redis.map { [.redis($0)] } ?? [],
        services: { _ in services },
        onServerRunning: onServerRunning,
        routes: { router, database in
            router.add(middleware: ErrorMiddleware(.api))
            router.get("version") { _, _ in
                JSONBody.response(["version": SwiftMDMVersion.current], status: .ok)
            }
            let v1 = router.group("v1").add(middleware: APIKeyMiddleware(apiKey: configuration.apiKey))
            if configuration.migrationEnabled {
                MigrationController(
                    handler: MigrationHandler(store: PostgresEnrollmentStore(client: database, logger: logger)),
                    maxBodyBytes: configuration.server.maxBodyBytes
                ).addRoutes(
                    to: router.group("migration").add(middleware: APIKeyMiddleware(apiKey: configuration.apiKey)))
            }
            EnqueueController(
                handler: EnqueueHandler(
                    queue: PostgresCommandQueue(client: database, logger: logger),
                    pusher: PushClient(
                        bus: bus,
                        listener: listener,
                        store: PostgresPushStore(client: database, logger: logger),
                        redriveAfter: configuration.pushRedriveAfter,
                        waitTimeout: configuration.pushWaitTimeout,
                        logger: logger
                    ),
                    metrics: metrics
                ),
                maxBodyBytes: configuration.server.maxBodyBytes
            ).addRoutes(to: v1)
            let certificates = PostgresPushCertificateStore(
                client: database,
                logger: logger,
                keyEncryptionKey: configuration.pushKeyEncryptionKey?.symmetricKey
            )
            PushCertificateController(
                handler: PushCertificateHandler(store: certificates),
                maxBodyBytes: configuration.server.maxBodyBytes
            ).addRoutes(to: v1)
            EscrowKeyUnlockController(
                certificates: certificates,
                endpoint: configuration.escrowKeyUnlockURL,
                trustRoots: configuration.escrowKeyUnlockTrustRoots,
                maxBodyBytes: configuration.server.maxBodyBytes
            ).addRoutes(to: v1)
            WebhookEventController(
                handler: WebhookEventHandler(store: PostgresWebhookEventStore(client: database, logger: logger))
            ).addRoutes(to: v1)
        }
    )
}

/// `APIService migrate`: applies every pending schema migration and exits.
func runMigrations(settings: Settings, logger: Logger) async throws {
    let server = try ServerConfiguration(settings: settings, defaultPort: APIConfiguration.defaultPort)
    let client = try Database.makeClient(configuration: server, logger: logger)
    try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { await client.run() }
        defer { group.cancelAll() }
        let applied = try await SchemaMigrator(client: client, logger: logger).migrate()
        logger.info(
            "schema is current",
            metadata: ["applied": "\(applied)", "version": "\(SchemaMigrator.latestVersion)"]
        )
    }
}
