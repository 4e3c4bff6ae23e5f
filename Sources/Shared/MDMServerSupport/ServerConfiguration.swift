import Logging

/// Settings every role shares: where it listens, its database, its logs, its body limit.
package struct ServerConfiguration: Sendable {
    package var host: String
    package var port: Int
    package var databaseURL: String
    package var databasePoolSize: Int
    /// How long a role waits at start for PostgreSQL to become reachable.
    package var databaseStartupTimeout: Double
    package var logLevel: Logger.Level
    /// Largest request body accepted; larger bodies get 413.
    package var maxBodyBytes: Int
    /// A file the role writes its listening port to once it serves (for supervisors and tests
    /// that start it on port 0).
    package var portFile: String?

    package static let defaultMaxBodyBytes = 32 * 1024 * 1024

    package init(
        host: String = "127.0.0.1",
        port: Int,
        databaseURL: String,
        databasePoolSize: Int = 20,
        databaseStartupTimeout: Double = 60,
        logLevel: Logger.Level = .info,
        maxBodyBytes: Int = ServerConfiguration.defaultMaxBodyBytes,
        portFile: String? = nil
    ) {
        self.host = host
        self.port = port
        self.databaseURL = databaseURL
        self.databasePoolSize = databasePoolSize
        self.databaseStartupTimeout = databaseStartupTimeout
        self.logLevel = logLevel
        self.maxBodyBytes = maxBodyBytes
        self.portFile = portFile
    }

    /// Reads `MDM_LISTEN`, `MDM_DATABASE_URL`, `MDM_DATABASE_POOL_SIZE`,
    /// `MDM_DATABASE_STARTUP_TIMEOUT`, `MDM_LOG_LEVEL`, `MDM_MAX_BODY_BYTES`, `MDM_PORT_FILE`.
    package init(settings: Settings, defaultPort: Int) throws(ConfigurationError) {
        let listen = settings.string("MDM_LISTEN", default: "127.0.0.1:\(defaultPort)")
        (host, port) = try Self.parseListen(listen)
        databaseURL =
            try settings.secret("MDM_DATABASE_URL") ?? "postgres://postgres@127.0.0.1:5432/mdm?sslmode=disable"
        databasePoolSize = try settings.int("MDM_DATABASE_POOL_SIZE", default: 20, range: 1...1000)
        databaseStartupTimeout = try settings.double("MDM_DATABASE_STARTUP_TIMEOUT", default: 60)
        logLevel = try LogSetup.level(settings)
        maxBodyBytes = try settings.int(
            "MDM_MAX_BODY_BYTES",
            default: Self.defaultMaxBodyBytes,
            range: 1024...(1 << 31)
        )
        portFile = settings.string("MDM_PORT_FILE")
    }

    static func parseListen(_ value: String) throws(ConfigurationError) -> (String, Int) {
        guard let colon = value.lastIndex(of: ":"),
            let port = Int(value[value.index(after: colon)...]),
            (0...65535).contains(port)
        else {
            throw ConfigurationError(setting: "MDM_LISTEN", problem: "expected host:port, got \(value)")
        }
        var host = String(value[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") {
            host = String(host.dropFirst().dropLast())
        }
        return (host.isEmpty ? "0.0.0.0" : host, port)
    }
}
