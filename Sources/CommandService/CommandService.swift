import MDMServerSupport

@main
enum CommandService {
    static func main() async throws {
        try await RoleMain.run(role: "command") { settings, logger in
            try buildCommandApplication(configuration: CommandConfiguration(settings: settings), logger: logger)
        }
    }
}
