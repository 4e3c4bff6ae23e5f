import AsyncHTTPClient
import Hummingbird
import Logging
import MDMServerSupport
import MDMStorage

/// Builds CheckinService: the seam tests use. Extra `tokenHandlers` add `GetToken` service
/// types beyond the configured forwarders.
func buildCheckinApplication(
    configuration: CheckinConfiguration,
    logger: Logger,
    httpClient: HTTPClient = .shared,
    tokenHandlers extraTokenHandlers: [String: any GetTokenHandler] = [:],
    onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }
) throws -> some ApplicationProtocol {
    let client = try Database.makeClient(configuration: configuration.server, logger: logger)
    let store = PostgresEnrollmentStore(client: client, logger: logger)

    var tokenHandlers: [String: any GetTokenHandler] = [:]
    for (type, url) in configuration.getTokenForwarding {
        tokenHandlers[type] = ForwardingTokenHandler(url: url, httpClient: httpClient)
    }
    tokenHandlers.merge(extraTokenHandlers) { _, extra in extra }

    let handler = CheckinHandler(
        store: store,
        declarativeManagement: configuration.declarativeManagement.map {
            DeclarativeManagementClient(configuration: $0, httpClient: httpClient)
        },
        tokenHandlers: tokenHandlers,
        userAuthenticateZeroLengthChallenge: configuration.userAuthenticateZeroLengthChallenge,
        retro: configuration.identity.retro
    )
    let router = Router()
    HealthController(checks: [.database(client, logger: logger)]).addRoutes(to: router)
    CheckinController(
        handler: handler,
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
