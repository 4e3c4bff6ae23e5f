import Foundation
import MDMServerSupport
import Testing

@testable import APIService
@testable import CheckinService

@Suite("Settings: flags, environment, validation")
struct SettingsTests {
    @Test func flagWinsOverEnvironmentAndBothSpellingsWork() throws {
        let settings = try Settings(
            arguments: ["--listen", "0.0.0.0:8080", "--log-level=debug", "migrate"],
            environment: ["MDM_LISTEN": "127.0.0.1:1", "MDM_DATABASE_URL": "postgres://u@h:1/d"]
        )
        let server = try ServerConfiguration(settings: settings, defaultPort: 9)
        #expect(server.host == "0.0.0.0")
        #expect(server.port == 8080)
        #expect(server.logLevel == .debug)
        #expect(server.databaseURL == "postgres://u@h:1/d")
        #expect(settings.arguments == ["migrate"])
    }

    @Test func invalidValuesNameTheSetting() throws {
        let settings = try Settings(arguments: ["--database-pool-size", "lots"], environment: [:])
        #expect(throws: ConfigurationError(setting: "MDM_DATABASE_POOL_SIZE", problem: "not an integer: lots")) {
            try ServerConfiguration(settings: settings, defaultPort: 9)
        }
        let listen = try Settings(arguments: [], environment: ["MDM_LISTEN": "nowhere"])
        #expect(throws: ConfigurationError.self) { try ServerConfiguration(settings: listen, defaultPort: 9) }
        let error = ConfigurationError(setting: "MDM_API_KEY", problem: "required")
        #expect(error.description.contains("MDM_API_KEY (--api-key)"))
    }

    @Test func unknownFlagsAreReported() throws {
        let settings = try Settings(arguments: ["--databse-url", "x", "--listen", "a:1"], environment: [:])
        #expect(settings.unknownFlags(known: SettingCatalogue.names) == ["--databse-url"])
    }

    @Test func rolesRefuseMissingRequiredSettings() throws {
        let empty = try Settings(arguments: [], environment: [:])
        #expect(throws: ConfigurationError.self) { try APIConfiguration(settings: empty) }
        #expect(throws: ConfigurationError.self) { try CheckinConfiguration(settings: empty) }
        let badMode = try Settings(arguments: [], environment: ["MDM_IDENTITY_MODE": "telepathy"])
        #expect {
            try CheckinConfiguration(settings: badMode)
        } throws: { error in
            (error as? ConfigurationError)?.setting == "MDM_IDENTITY_MODE"
        }
    }

    @Test func secretsCanComeFromFiles() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("key-\(UUID().uuidString)").path
        try Data("file-secret-value\n".utf8).write(to: URL(fileURLWithPath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let settings = try Settings(arguments: [], environment: ["MDM_API_KEY_FILE": path])
        #expect(try APIConfiguration(settings: settings).apiKey == "file-secret-value")
    }

    @Test func operationsGuideDocumentsEverySetting() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let guide = try String(contentsOf: root.appendingPathComponent("docs/operations.md"), encoding: .utf8)
        for setting in SettingCatalogue.all {
            #expect(guide.contains("`\(setting.name)`"), "docs/operations.md lacks \(setting.name)")
        }
    }
}
