import AsyncHTTPClient
import Hummingbird
import Logging
import MDMServerSupport
import MDMStorage
import MDMWebhook

/// Builds CheckinService: the seam tests use. Extra `tokenHandlers` add `GetToken` service
/// types beyond the configured forwarders.
func buildCheckinApplication(
    configuration: CheckinConfiguration,
    logger: Logger,
    httpClient: HTTPClient = .shared,
    tokenHandlers extraTokenHandlers: [String: any GetTokenHandler] = [:],
    metrics: MDMMetrics = .process,
    onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }
) throws -> some ApplicationProtocol {
    var tokenHandlers: [String: any GetTokenHandler] = [:]
    for (type, url) in configuration.getTokenForwarding {
        tokenHandlers[type] = ForwardingTokenHandler(url: url, httpClient: httpClient)
    }
    tokenHandlers.merge(extraTokenHandlers) { _, extra in extra }

    return try RoleApplication.build(
        server: configuration.server,
        logger: logger,
        metrics: metrics,
        onServerRunning: onServerRunning
    ) { router, database in
        let handler = CheckinHandler(
            store: PostgresEnrollmentStore(client: database, logger: logger),
            declarativeManagement: configuration.declarativeManagement.map {
                DeclarativeManagementClient(configuration: $0, httpClient: httpClient)
            },
            tokenHandlers: tokenHandlers,
            userAuthenticateZeroLengthChallenge: configuration.userAuthenticateZeroLengthChallenge,
            retro: configuration.identity.retro,
            metrics: metrics,
            webhook: configuration.recordWebhookEvents ? WebhookEventRenderer() : nil
        )
        let extractor = DeviceIdentityExtractor(configuration: configuration.identity)
        CheckinController(
            handler: handler,
            extractor: extractor,
            maxBodyBytes: configuration.server.maxBodyBytes
        ).addRoutes(to: router)
        if let upstream = configuration.authProxyURL {
            AuthProxyController(
                upstream: upstream,
                store: PostgresEnrollmentStore(client: database, logger: logger),
                extractor: extractor,
                httpClient: httpClient,
                maxBodyBytes: configuration.server.maxBodyBytes
            ).addRoutes(to: router)
        }
    }
}
