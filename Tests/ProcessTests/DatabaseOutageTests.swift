import Foundation
import MDMTestSupport
import Testing

@Suite("Roles ride out a PostgreSQL outage", .enabled(if: processTestsEnabled))
struct DatabaseOutageTests {
    @Test func readinessFollowsPostgresAndRequestsSucceedAfterItReturns() async throws {
        let postgres = try await TestPostgresServer.start()
        let fixture = try ProcessFixture.make()
        var roles: [RoleProcess] = []
        defer {
            let started = roles
            Task {
                for role in started { await role.stop() }
                await postgres.destroy()
                fixture.removeFiles()
            }
        }
        let environment = fixture.environment(databaseURL: postgres.url)
        let migration = try await RoleProcess.run(.api, arguments: ["migrate"], environment: environment)
        try #require(migration.exit == .exited(0), "migrate: \(migration.output)")

        for role in RoleProcess.Role.allCases {
            roles.append(try await RoleProcess.start(role, environment: environment))
        }
        let byRole = Dictionary(uniqueKeysWithValues: zip(RoleProcess.Role.allCases, roles))
        let checkin = try #require(byRole[.checkin])
        let command = try #require(byRole[.command])
        let api = try #require(byRole[.api])
        let device = try fixture.makeDevice(
            checkinURL: checkin.baseURL + "/checkin", commandURL: command.baseURL + "/mdm")
        try await device.enroll()

        try await postgres.stop()
        let stopped = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for role in roles {
                group.addTask { try await role.waitForReadiness(503, timeout: .seconds(5)) }
            }
            try await group.waitForAll()
        }
        let allUnready = ContinuousClock.now - stopped
        #expect(allUnready < .seconds(5), "every /readyz answered 503 after \(allUnready)")
        // Liveness does not depend on the database: nobody should restart the process.
        for role in roles {
            #expect(await role.status(of: "/livez") == 200)
        }

        try await postgres.start()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for role in roles {
                group.addTask { try await role.waitForReadiness(200, timeout: .seconds(60)) }
            }
            try await group.waitForAll()
        }
        // The same processes serve again: enqueue through the API, deliver through CommandService.
        let queued = try makeCommand()
        #expect(try await fixture.enqueue(queued.plist, to: [device.udid], apiBaseURL: api.baseURL) == 200)
        #expect(try await device.idle().commandUUID() == queued.uuid)
        #expect(try await device.acknowledge(queued.uuid).status == 200)
        for role in roles {
            #expect(role.process.exitStatus == nil, "\(role.executable) kept running")
            expectJSONLines(role.output, role: role.executable)
            #expect(!role.output.contains(fixture.apiKey), "\(role.executable) logged the API key")
        }
    }
}
