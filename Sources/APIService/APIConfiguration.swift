import MDMServerSupport
import MDMStorage

/// APIService settings.
struct APIConfiguration: Sendable {
    var server: ServerConfiguration
    var apiKey: String
    /// Seals push-certificate private keys at rest; `nil` stores them as plain PEM.
    var pushKeyEncryptionKey: PushKeyEncryptionKey?

    static let defaultPort = 9000

    init(server: ServerConfiguration, apiKey: String, pushKeyEncryptionKey: PushKeyEncryptionKey? = nil) {
        self.server = server
        self.apiKey = apiKey
        self.pushKeyEncryptionKey = pushKeyEncryptionKey
    }

    init(settings: Settings) throws(ConfigurationError) {
        guard let key = try settings.secret("MDM_API_KEY") else {
            throw ConfigurationError(setting: "MDM_API_KEY", problem: "required (or MDM_API_KEY_FILE)")
        }
        guard key.count >= 8 else {
            throw ConfigurationError(setting: "MDM_API_KEY", problem: "must be at least 8 characters")
        }
        self.init(
            server: try ServerConfiguration(settings: settings, defaultPort: Self.defaultPort),
            apiKey: key,
            pushKeyEncryptionKey: try settings.pushKeyEncryptionKey()
        )
    }
}
