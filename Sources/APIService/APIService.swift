import MDMServerSupport

@main
enum APIService {
    static func main() async throws {
        try await RoleMain.run(role: "api", subcommands: ["migrate": runMigrations]) { settings, logger in
            try buildAPIApplication(configuration: APIConfiguration(settings: settings), logger: logger)
        }
    }
}
