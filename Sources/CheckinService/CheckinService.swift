import MDMServerSupport

@main
enum CheckinService {
    static func main() async throws {
        try await RoleMain.run(role: "checkin") { settings, logger in
            try buildCheckinApplication(configuration: CheckinConfiguration(settings: settings), logger: logger)
        }
    }
}
