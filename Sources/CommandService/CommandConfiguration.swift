import MDMServerSupport
import MDMWebhook

/// CommandService settings.
struct CommandConfiguration: Sendable {
    var server: ServerConfiguration
    var identity: DeviceIdentityConfiguration
    /// Record a webhook event with every accepted report (`MDM_WEBHOOK_URL` is set).
    var recordWebhookEvents: Bool

    static let defaultPort = 9002

    init(server: ServerConfiguration, identity: DeviceIdentityConfiguration, recordWebhookEvents: Bool = false) {
        self.server = server
        self.identity = identity
        self.recordWebhookEvents = recordWebhookEvents
    }

    init(settings: Settings) throws(ConfigurationError) {
        self.init(
            server: try ServerConfiguration(settings: settings, defaultPort: Self.defaultPort),
            identity: try DeviceIdentityConfiguration(settings: settings),
            recordWebhookEvents: try WebhookConfiguration.isEnabled(settings: settings)
        )
    }
}
