import Hummingbird
import Logging
import MDMServerSupport
import MDMStorage
import MDMWebhook

/// Builds CommandService: the seam tests use.
func buildCommandApplication(
    configuration: CommandConfiguration,
    logger: Logger,
    metrics: MDMMetrics = .process,
    onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }
) throws -> some ApplicationProtocol {
    try RoleApplication.build(
        server: configuration.server,
        logger: logger,
        metrics: metrics,
        onServerRunning: onServerRunning
    ) { router, database in
        CommandController(
            handler: CommandHandler(
                queue: PostgresCommandQueue(client: database, logger: logger),
                retro: configuration.identity.retro,
                metrics: metrics,
                webhook: configuration.recordWebhookEvents ? WebhookEventRenderer() : nil
            ),
            extractor: DeviceIdentityExtractor(configuration: configuration.identity),
            maxBodyBytes: configuration.server.maxBodyBytes
        ).addRoutes(to: router)
    }
}
