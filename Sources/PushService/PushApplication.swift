import Hummingbird
import Logging
import MDMServerSupport

/// PushService settings. The Redis consumer and the APNs client arrive with the push work;
/// until then the role serves its health endpoints.
struct PushConfiguration: Sendable {
    var server: ServerConfiguration

    static let defaultPort = 9003

    init(settings: Settings) throws(ConfigurationError) {
        server = try ServerConfiguration(settings: settings, defaultPort: Self.defaultPort)
    }

    init(server: ServerConfiguration) {
        self.server = server
    }
}

/// Builds PushService: the seam tests use.
func buildPushApplication(
    configuration: PushConfiguration,
    logger: Logger,
    onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }
) throws -> some ApplicationProtocol {
    try RoleApplication.build(server: configuration.server, logger: logger, onServerRunning: onServerRunning) { _, _ in
    }
}
