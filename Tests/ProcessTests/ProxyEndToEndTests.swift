import Foundation
import MDMTestSupport
import PostgresNIO
import Testing

@Suite("End to end through nginx with two CommandService replicas", .enabled(if: processTestsEnabled))
struct ProxyEndToEndTests {
    @Test func twoHundredDevicesDrainTheirQueuesExactlyOnceInOrderAcrossBothReplicas() async throws {
        let fixture = try ProcessFixture.make()
        let database = try await TestDatabase.create()
        let environment = fixture.environment(databaseURL: database.url)
        let checkin = try await RoleProcess.start(.checkin, environment: environment)
        let api = try await RoleProcess.start(.api, environment: environment)
        let replicas = [
            try await RoleProcess.start(.command, environment: environment),
            try await RoleProcess.start(.command, environment: environment),
        ]
        let proxy = try await TestNginx.start(
            api: [api.port], checkin: [checkin.port], command: replicas.map(\.port))
        defer {
            Task {
                await proxy.stop()
                for role in [checkin, api] + replicas { await role.stop() }
                try? await database.drop()
                fixture.removeFiles()
            }
        }

        let deviceCount = 200
        let commandCount = 5
        var devices: [SimulatedDevice] = []
        for _ in 0..<deviceCount {
            devices.append(
                try fixture.makeDevice(checkinURL: proxy.baseURL + "/checkin", commandURL: proxy.baseURL + "/mdm"))
        }
        try await forEachConcurrently(devices, width: 16) { device in try await device.enroll() }

        // Each command goes to all 200 devices in one enqueue, through the proxy.
        var commands: [String] = []
        for index in 0..<commandCount {
            let command = try makeCommand(uuid: "e2e-\(index)-\(UUID().uuidString)")
            let status = try await fixture.enqueue(command.plist, to: devices.map(\.udid), apiBaseURL: proxy.baseURL)
            #expect(status == 200)
            commands.append(command.uuid)
        }

        let received = Locked<[String: [String]]>([:])
        try await forEachConcurrently(devices, width: 32) { device in
            var seen: [String] = []
            var reply = try await device.idle()
            while let uuid = try reply.commandUUID() {
                #expect(reply.status == 200)
                seen.append(uuid)
                // A device never gets more than its queue holds: stop a runaway loop.
                guard seen.count <= commandCount else { break }
                reply = try await device.acknowledge(uuid)
            }
            #expect(reply.status == 200 && reply.body.isEmpty, "the drained queue answers an empty 200")
            received.withLock { $0[device.udid] = seen }
        }

        let byDevice = received.withLock { $0 }
        #expect(byDevice.count == deviceCount)
        for (udid, seen) in byDevice where seen != commands {
            Issue.record("\(udid) received \(seen), expected \(commands) once each in order")
        }
        let stored = try await database.withClient { client in
            let rows = try await client.query(
                "SELECT count(*)::int8, count(DISTINCT (enrollment_id, command_uuid))::int8 FROM command_results",
                logger: TestDatabase.quietLogger
            )
            for try await (total, distinct) in rows.decode((Int64, Int64).self) { return (total, distinct) }
            return (Int64(0), Int64(0))
        }
        #expect(stored.0 == Int64(deviceCount * commandCount) && stored.1 == stored.0)

        // Both replicas served device polls, and together they answered every one.
        var answered = 0.0
        for replica in replicas {
            let metrics = try PrometheusText(try await replica.metrics())
            let polls = metrics.sum("mdm_http_requests_total", where: ["route": "/mdm", "status": "200"])
            #expect(polls > 0, "replica on port \(replica.port) served no /mdm request")
            answered += polls
            #expect(metrics.sum("mdm_command_reports_total", where: ["status": "Acknowledged"]) > 0)
        }
        #expect(answered >= Double(deviceCount * (commandCount + 1)))
        let checkinMetrics = try PrometheusText(try await checkin.metrics())
        #expect(checkinMetrics.sum("mdm_checkins_total", where: ["message_type": "TokenUpdate"]) == Double(deviceCount))
        let apiMetrics = try PrometheusText(try await api.metrics())
        #expect(apiMetrics.sum("mdm_commands_enqueued_total") == Double(deviceCount * commandCount))
    }
}
