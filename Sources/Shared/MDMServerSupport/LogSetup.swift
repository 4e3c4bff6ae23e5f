import Logging

/// How a role writes its log lines (`MDM_LOG_FORMAT`).
package enum LogFormat: String, Sendable, CaseIterable {
    /// Human-readable lines.
    case text
    /// One JSON object per line.
    case json
}

/// Logging for a role process.
package enum LogSetup {
    /// Installs the process's log handler from `MDM_LOG_LEVEL` and `MDM_LOG_FORMAT` and returns
    /// the role's logger. Call once per process, before anything logs.
    package static func bootstrap(role: String, settings: Settings) throws(ConfigurationError) -> Logger {
        let level = try level(settings)
        let format = try format(settings)
        LoggingSystem.bootstrap { label in
            makeHandler(label: label, level: level, format: format)
        }
        var logger = Logger(label: "swiftmdm.\(role)")
        logger.logLevel = level
        return logger
    }

    package static func makeHandler(
        label: String,
        level: Logger.Level,
        format: LogFormat,
        sink: LogLineSink = .standardError
    ) -> any LogHandler {
        LineLogHandler(label: label, level: level, format: format, sink: sink)
    }

    package static func level(_ settings: Settings) throws(ConfigurationError) -> Logger.Level {
        let raw = settings.string("MDM_LOG_LEVEL", default: "info")
        guard let level = Logger.Level(rawValue: raw.lowercased()) else {
            throw ConfigurationError(setting: "MDM_LOG_LEVEL", problem: "unknown level \(raw)")
        }
        return level
    }

    package static func format(_ settings: Settings) throws(ConfigurationError) -> LogFormat {
        let raw = settings.string("MDM_LOG_FORMAT", default: "text")
        guard let format = LogFormat(rawValue: raw.lowercased()) else {
            throw ConfigurationError(setting: "MDM_LOG_FORMAT", problem: "expected text or json, got \(raw)")
        }
        return format
    }
}
