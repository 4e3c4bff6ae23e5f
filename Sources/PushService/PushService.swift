import MDMServerSupport

@main
enum PushService {
    static func main() async throws {
        try await RoleMain.run(role: "push") { settings, logger in
            try buildPushApplication(configuration: PushConfiguration(settings: settings), logger: logger)
        }
    }
}
