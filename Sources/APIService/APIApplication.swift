import Hummingbird
import Logging
import MDMServerSupport
import MDMStorage
import PostgresNIO

/// Builds APIService: the seam tests use.
func buildAPIApplication(
    configuration: APIConfiguration,
    logger: Logger,
    onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }
) throws -> some ApplicationProtocol {
    try RoleApplication.build(server: configuration.server, logger: logger, onServerRunning: onServerRunning) {
        router,
        database in
        router.add(middleware: ErrorMiddleware(.api))
        router.get("version") { _, _ in
            JSONBody.response(["version": SwiftMDMVersion.current], status: .ok)
        }
        let v1 = router.group("v1").add(middleware: APIKeyMiddleware(apiKey: configuration.apiKey))
        EnqueueController(
            handler: EnqueueHandler(queue: PostgresCommandQueue(client: database, logger: logger)),
            maxBodyBytes: configuration.server.maxBodyBytes
        ).addRoutes(to: v1)
        PushCertificateController(
            handler: PushCertificateHandler(store: PostgresPushCertificateStore(client: database, logger: logger)),
            maxBodyBytes: configuration.server.maxBodyBytes
        ).addRoutes(to: v1)
        WebhookEventController(
            handler: WebhookEventHandler(store: PostgresWebhookEventStore(client: database, logger: logger))
        ).addRoutes(to: v1)
    }
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
