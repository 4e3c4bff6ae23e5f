import Hummingbird
import Logging
import MDMServerSupport
import MDMStorage

/// Builds CommandService: the seam tests use.
func buildCommandApplication(
    configuration: CommandConfiguration,
    logger: Logger,
    onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }
) throws -> some ApplicationProtocol {
    let client = try Database.makeClient(configuration: configuration.server, logger: logger)
    let router = Router()
    HealthController(checks: [.database(client, logger: logger)]).addRoutes(to: router)
    CommandController(
        handler: CommandHandler(
            queue: PostgresCommandQueue(client: client, logger: logger), retro: configuration.identity.retro),
        extractor: DeviceIdentityExtractor(configuration: configuration.identity),
        maxBodyBytes: configuration.server.maxBodyBytes
    ).addRoutes(to: router)
    return RoleApplication.make(
        router: router,
        server: configuration.server,
        database: client,
        logger: logger,
        onServerRunning: onServerRunning
    )
}
