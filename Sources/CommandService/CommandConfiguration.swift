import MDMServerSupport

/// CommandService settings.
struct CommandConfiguration: Sendable {
    var server: ServerConfiguration
    var identity: DeviceIdentityConfiguration

    static let defaultPort = 9002

    init(server: ServerConfiguration, identity: DeviceIdentityConfiguration) {
        self.server = server
        self.identity = identity
    }

    init(settings: Settings) throws(ConfigurationError) {
        self.init(
            server: try ServerConfiguration(settings: settings, defaultPort: Self.defaultPort),
            identity: try DeviceIdentityConfiguration(settings: settings)
        )
    }
}
