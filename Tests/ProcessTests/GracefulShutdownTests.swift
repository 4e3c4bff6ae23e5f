import AsyncHTTPClient
import Foundation
import Logging
import MDMTestSupport
import PostgresNIO
import Testing

#if canImport(Glibc)
    import Glibc
#endif

@Suite("Graceful shutdown of a role process", .enabled(if: processTestsEnabled))
struct GracefulShutdownTests {
    /// What the devices saw while CommandService went down under them.
    struct Observed: Sendable {
        var acknowledged: [(enrollment: String, command: String)] = []
        var statuses: [Int: Int] = [:]
        var failures = 0
    }

    @Test func sigtermDuringLoadLosesNoAcknowledgedResult() async throws {
        let fixture = try ProcessFixture.make()
        defer { fixture.removeFiles() }
        let database = try await TestDatabase.create()
        let environment = fixture.environment(databaseURL: database.url)
        let checkin = try await RoleProcess.start(.checkin, environment: environment)
        let api = try await RoleProcess.start(.api, environment: environment)
        let command = try await RoleProcess.start(.command, environment: environment)
        defer {
            Task {
                await checkin.stop()
                await api.stop()
                await command.stop()
                try? await database.drop()
            }
        }

        let deviceCount = 16
        let commandsPerDevice = 60
        var devices: [SimulatedDevice] = []
        for _ in 0..<deviceCount {
            let device = try fixture.makeDevice(
                checkinURL: checkin.baseURL + "/checkin", commandURL: command.baseURL + "/mdm")
            try await device.enroll()
            devices.append(device)
        }
        let ids = devices.map(\.udid)
        for _ in 0..<commandsPerDevice {
            #expect(try await fixture.enqueue(try makeCommand().plist, to: ids, apiBaseURL: api.baseURL) == 200)
        }

        // Devices poll and acknowledge as fast as they can; once a third of the work is done,
        // SIGTERM arrives while requests are in flight.
        let observed = Locked(Observed())
        let signalAfter = deviceCount * commandsPerDevice / 3
        let signalled = Locked(false)
        let enrolled = devices
        let load: @Sendable () async throws -> Void = {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for device in enrolled {
                    group.addTask {
                        var reply: DeviceReply
                        do {
                            reply = try await device.idle()
                        } catch {
                            observed.withLock { $0.failures += 1 }
                            return
                        }
                        while reply.status == 200, let uuid = try reply.commandUUID() {
                            do {
                                reply = try await device.acknowledge(uuid)
                            } catch {
                                // The server went away: this result may or may not be stored.
                                observed.withLock { $0.failures += 1 }
                                return
                            }
                            let count = observed.withLock { state -> Int in
                                state.statuses[reply.status, default: 0] += 1
                                if reply.status == 200 { state.acknowledged.append((device.udid, uuid)) }
                                return state.acknowledged.count
                            }
                            if count >= signalAfter,
                                signalled.withLock({ flag in
                                    defer { flag = true }
                                    return !flag
                                })
                            {
                                command.terminate()
                            }
                        }
                    }
                }
                try await group.waitForAll()
            }
        }
        // Once CommandService is gone, requests still queued in the HTTP client would only
        // retry connecting until they time out: stop the devices then.
        await withTaskGroup(of: Void.self) { group in
            group.addTask { try? await load() }
            group.addTask { _ = await command.process.exitUnlessCancelled() }
            await group.next()
            group.cancelAll()
        }

        let exit = try await command.waitForExit(timeout: .seconds(40))
        #expect(exit == .exited(0), "CommandService drains and exits 0 on SIGTERM")
        let seen = observed.withLock { $0 }
        #expect(seen.acknowledged.count >= signalAfter)
        #expect(seen.acknowledged.count < deviceCount * commandsPerDevice, "SIGTERM arrived before the queues drained")
        // In-flight requests are answered, not failed: the pool outlives the HTTP server.
        #expect(seen.statuses.keys.allSatisfy { $0 == 200 }, "statuses seen: \(seen.statuses)")

        let stored = try await database.withClient { client in
            var stored = Set<String>()
            let rows = try await client.query(
                "SELECT enrollment_id, command_uuid FROM command_results WHERE status = 'Acknowledged'",
                logger: TestDatabase.quietLogger
            )
            for try await (enrollment, uuid) in rows.decode((String, String).self) {
                stored.insert("\(enrollment)/\(uuid)")
            }
            return stored
        }
        let missing = seen.acknowledged.filter { !stored.contains("\($0.enrollment)/\($0.command)") }
        #expect(missing.isEmpty, "acknowledged with 200 but not stored: \(missing.prefix(5))")

        let output = command.output
        expectJSONLines(output, role: "CommandService")
        #expect(output.contains("shutting down"))
        #expect(output.contains("\"message\":\"stopped\""))
    }

    @Test func sigtermWaitsForTheRequestInFlightAndExitsZero() async throws {
        let upstream = try await StallingHTTPServer.start(delay: .seconds(2))
        let (exit, reply) = try await checkinWithSlowUpstream(upstream, grace: "20")
        #expect(reply?.status == 200, "the request in flight at SIGTERM is answered")
        #expect(reply?.body == Data("{}".utf8))
        #expect(exit.exit == .exited(0))
        #expect(exit.after >= .seconds(1), "the role waited for its request (\(exit.after))")
    }

    @Test func aDrainLongerThanTheGracePeriodIsAbandoned() async throws {
        let upstream = try await StallingHTTPServer.start(delay: .seconds(120))
        let (exit, reply) = try await checkinWithSlowUpstream(upstream, grace: "1")
        #expect(reply?.status != 200, "the stalled request is not answered as a success")
        #expect(exit.exit == .exited(1), "an abandoned drain is not a clean exit")
        // Grace (1 s) plus the cancellation allowance (2 s), with room for a loaded machine.
        #expect(exit.after < .seconds(10), "exited \(exit.after) after SIGTERM with \(exit.exit)")
    }

    /// Starts CheckinService with a DDM server that stalls, sends a DeclarativeManagement
    /// check-in, and SIGTERMs the role once the check-in has reached the DDM server. Returns
    /// how the role exited (and how long after SIGTERM) and what the device got, if anything.
    func checkinWithSlowUpstream(_ upstream: StallingHTTPServer, grace: String) async throws
        -> (exit: (exit: ProcessExit, after: Duration), reply: DeviceReply?)
    {
        let fixture = try ProcessFixture.make()
        let database = try await TestDatabase.create()
        let checkin = try await RoleProcess.start(
            .checkin,
            environment: fixture.environment(
                databaseURL: database.url,
                [
                    "MDM_DDM_URL": "http://127.0.0.1:\(upstream.port)/", "MDM_DDM_TIMEOUT": "300",
                    "MDM_SHUTDOWN_GRACE_SECONDS": grace,
                ])
        )
        defer {
            Task {
                await checkin.stop()
                await upstream.close()
                try? await database.drop()
                fixture.removeFiles()
            }
        }
        let device = try fixture.makeDevice(checkinURL: checkin.baseURL + "/checkin", commandURL: "")
        try await device.enroll()
        let request = Task {
            try? await device.checkin([
                "MessageType": "DeclarativeManagement", "UDID": device.udid, "Endpoint": "tokens",
            ])
        }
        var arrivals = upstream.arrivals.makeAsyncIterator()
        _ = await arrivals.next()
        let signalled = ContinuousClock.now
        checkin.terminate()
        let exit = try await checkin.waitForExit(timeout: .seconds(60))
        let after = ContinuousClock.now - signalled
        request.cancel()
        return ((exit, after), await request.value)
    }

    @Test func invalidConfigurationStopsTheRoleWithAMessageNamingTheSetting() async throws {
        let fixture = try ProcessFixture.make()
        defer { fixture.removeFiles() }
        let environment = fixture.environment(
            databaseURL: "postgres://postgres@127.0.0.1:9/none", ["MDM_SHUTDOWN_GRACE_SECONDS": "soon"])
        let (exit, output) = try await RoleProcess.run(.command, arguments: [], environment: environment)
        #expect(exit == .exited(2))
        #expect(output.contains("MDM_SHUTDOWN_GRACE_SECONDS (--shutdown-grace-seconds)"), "\(output)")
    }
}
