import MDMServerSupport

@main
enum APIService {
    static func main() async throws {
        try await RoleMain.run(
            role: "api", subcommands: ["migrate": runMigrations, "migrate-from-nanomdm": runNanoMDMImport]
        ) { settings, logger in
            try buildAPIApplication(configuration: APIConfiguration(settings: settings), logger: logger)
        }
    }
}
