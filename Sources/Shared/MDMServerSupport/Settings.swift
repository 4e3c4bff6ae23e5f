import Foundation

/// A setting that is missing, malformed or unknown. The message names the setting by both of
/// its spellings so an operator can find it in `docs/operations.md`.
package struct ConfigurationError: Error, Sendable, Equatable, CustomStringConvertible {
    package var setting: String
    package var problem: String

    package init(setting: String, problem: String) {
        self.setting = setting
        self.problem = problem
    }

    package var description: String {
        "invalid configuration: \(setting) (\(Settings.flagName(for: setting))): \(problem)"
    }
}

/// Where a role's settings come from: every setting is an environment variable (`MDM_FOO_BAR`)
/// and a flag of the same name (`--foo-bar value` or `--foo-bar=value`); a flag wins.
package struct Settings: Sendable {
    private var environment: [String: String]
    private var flags: [String: String]
    /// Positional arguments (for example `migrate`).
    package private(set) var arguments: [String]

    /// - Parameter arguments: the command line without the executable name.
    package init(arguments: [String], environment: [String: String]) throws(ConfigurationError) {
        self.environment = environment
        var flags: [String: String] = [:]
        var positional: [String] = []
        var index = arguments.startIndex
        while index < arguments.endIndex {
            let argument = arguments[index]
            index += 1
            guard argument.hasPrefix("--"), argument.count > 2 else {
                positional.append(argument)
                continue
            }
            let body = argument.dropFirst(2)
            let name: Substring
            let value: String
            if let equals = body.firstIndex(of: "=") {
                name = body[..<equals]
                value = String(body[body.index(after: equals)...])
            } else if index < arguments.endIndex, !arguments[index].hasPrefix("--") {
                name = body
                value = arguments[index]
                index += 1
            } else {
                // A bare flag is a boolean switch.
                name = body
                value = "true"
            }
            flags[Self.environmentName(forFlag: String(name))] = value
        }
        self.flags = flags
        self.arguments = positional
    }

    /// Settings from this process's command line and environment.
    package static func fromProcess() throws(ConfigurationError) -> Settings {
        try Settings(
            arguments: Array(CommandLine.arguments.dropFirst()),
            environment: ProcessInfo.processInfo.environment
        )
    }

    package static func flagName(for setting: String) -> String {
        let trimmed = setting.hasPrefix("MDM_") ? String(setting.dropFirst(4)) : setting
        return "--" + trimmed.lowercased().replacingOccurrences(of: "_", with: "-")
    }

    private static func environmentName(forFlag flag: String) -> String {
        "MDM_" + flag.uppercased().replacingOccurrences(of: "-", with: "_")
    }

    /// Flags that no setting of this role reads: a typo must not be silently ignored.
    package func unknownFlags(known: Set<String>) -> [String] {
        flags.keys.filter { !known.contains($0) }.sorted().map(Self.flagName(for:))
    }

    package func string(_ name: String) -> String? {
        let value = flags[name] ?? environment[name]
        guard let value, !value.isEmpty else { return nil }
        return value
    }

    package func string(_ name: String, default defaultValue: String) -> String {
        string(name) ?? defaultValue
    }

    package func require(_ name: String) throws(ConfigurationError) -> String {
        guard let value = string(name) else {
            throw ConfigurationError(setting: name, problem: "required")
        }
        return value
    }

    package func int(_ name: String, default defaultValue: Int, range: ClosedRange<Int>? = nil)
        throws(ConfigurationError) -> Int
    {
        guard let raw = string(name) else { return defaultValue }
        guard let value = Int(raw.trimmingCharacters(in: .whitespaces)) else {
            throw ConfigurationError(setting: name, problem: "not an integer: \(raw)")
        }
        if let range, !range.contains(value) {
            throw ConfigurationError(setting: name, problem: "\(value) is outside \(range)")
        }
        return value
    }

    package func double(_ name: String, default defaultValue: Double) throws(ConfigurationError) -> Double {
        guard let raw = string(name) else { return defaultValue }
        guard let value = Double(raw.trimmingCharacters(in: .whitespaces)), value >= 0 else {
            throw ConfigurationError(setting: name, problem: "not a non-negative number: \(raw)")
        }
        return value
    }

    package func bool(_ name: String, default defaultValue: Bool) throws(ConfigurationError) -> Bool {
        guard let raw = string(name) else { return defaultValue }
        switch raw.lowercased() {
        case "1", "true", "yes", "on": return true
        case "0", "false", "no", "off": return false
        default: throw ConfigurationError(setting: name, problem: "not a boolean: \(raw)")
        }
    }

    /// A secret given directly (`NAME`) or as a file (`NAME_FILE`), trimmed of trailing newlines.
    package func secret(_ name: String) throws(ConfigurationError) -> String? {
        if let value = string(name) { return value }
        guard let path = string(name + "_FILE") else { return nil }
        guard let contents = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw ConfigurationError(setting: name + "_FILE", problem: "cannot read \(path)")
        }
        return contents.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

extension Settings {
    /// A duration given in (fractional) seconds.
    package func seconds(_ name: String, default defaultValue: Duration) throws(ConfigurationError) -> Duration {
        guard string(name) != nil else { return defaultValue }
        let value = try double(name, default: 0)
        return .milliseconds(Int64((value * 1000).rounded()))
    }
}
