import Foundation
import MDMStorage
import MDMTestSupport
import Testing

@Suite("Device command flow through CheckinService, CommandService and APIService")
struct CommandFlowTests {
    @Test func enrolledDeviceDrainsItsQueueInOrderThenGetsEmpty() async throws {
        try await TestStack.with { stack in
            let device = try stack.makeDevice()
            try await device.enroll()
            let first = try makeCommand("DeviceInformation")
            let second = try makeCommand("ProfileList")
            #expect(try await stack.enqueue(first.plist, to: [device.udid]).status == 200)
            #expect(try await stack.enqueue(second.plist, to: [device.udid]).status == 200)

            let idle = try await device.idle()
            #expect(idle.status == 200)
            #expect(idle.body == first.plist, "command bytes are delivered verbatim")
            let next = try await device.acknowledge(first.uuid)
            #expect(try next.commandUUID() == second.uuid)
            let empty = try await device.acknowledge(second.uuid)
            #expect(empty.status == 200)
            #expect(empty.body.isEmpty)
            #expect(try await device.idle().body.isEmpty)
        }
    }

    @Test func fiveCommandsComeBackInFIFOOrder() async throws {
        try await TestStack.with { stack in
            let device = try stack.makeDevice()
            try await device.enroll()
            var uuids: [String] = []
            for index in 0..<5 {
                let command = try makeCommand(uuid: "fifo-\(index)-\(UUID().uuidString)")
                try await stack.enqueue(command.plist, to: [device.udid])
                uuids.append(command.uuid)
            }
            var received: [String] = []
            var reply = try await device.idle()
            while let uuid = try reply.commandUUID() {
                received.append(uuid)
                reply = try await device.acknowledge(uuid)
            }
            #expect(received == uuids)
        }
    }

    @Test func notNowSkipsTheEntryUntilIdleOrAFinalStatus() async throws {
        try await TestStack.with { stack in
            let device = try stack.makeDevice()
            try await device.enroll()
            let a = try makeCommand(uuid: "a-\(UUID().uuidString)")
            let b = try makeCommand(uuid: "b-\(UUID().uuidString)")
            let c = try makeCommand(uuid: "c-\(UUID().uuidString)")
            for command in [a, b, c] { try await stack.enqueue(command.plist, to: [device.udid]) }

            #expect(try await device.idle().commandUUID() == a.uuid)
            // After NotNow only never-answered entries qualify.
            #expect(try await device.notNow(a.uuid).commandUUID() == b.uuid)
            #expect(try await device.notNow(b.uuid).commandUUID() == c.uuid)
            #expect(try await device.notNow(c.uuid).body.isEmpty)
            // Idle makes NotNow entries eligible again, in order.
            #expect(try await device.idle().commandUUID() == a.uuid)
            // A final status also makes them eligible again.
            #expect(try await device.acknowledge(a.uuid).commandUUID() == b.uuid)
            #expect(try await device.report(status: "Error", commandUUID: b.uuid).commandUUID() == c.uuid)
            #expect(try await device.acknowledge(c.uuid).body.isEmpty)
        }
    }

    @Test func multiTargetEnqueueReachesEachTargetExactlyOnce() async throws {
        try await TestStack.with { stack in
            var devices: [SimulatedDevice] = []
            for _ in 0..<4 {
                let device = try stack.makeDevice()
                try await device.enroll()
                devices.append(device)
            }
            let command = try makeCommand()
            let ids = devices.map(\.udid)
            let reply = try await stack.enqueue(command.plist, to: ids + [ids[0]])
            #expect(reply.status == 200)
            for device in devices {
                #expect(try await device.idle().commandUUID() == command.uuid)
                #expect(try await device.acknowledge(command.uuid).body.isEmpty)
            }
        }
    }

    @Test func userChannelQueueIsSeparateFromTheDeviceQueue() async throws {
        try await TestStack.with { stack in
            let device = try stack.makeDevice()
            try await device.enroll()
            let userID = "USER-\(UUID().uuidString)"
            #expect(try await device.tokenUpdate(userID: userID).status == 200)
            let deviceCommand = try makeCommand("DeviceInformation")
            let userCommand = try makeCommand("ProfileList")
            try await stack.enqueue(deviceCommand.plist, to: [device.udid])
            try await stack.enqueue(userCommand.plist, to: ["\(device.udid):\(userID)"])

            #expect(try await device.idle(userID: userID).commandUUID() == userCommand.uuid)
            #expect(try await device.acknowledge(userCommand.uuid, userID: userID).body.isEmpty)
            #expect(try await device.idle().commandUUID() == deviceCommand.uuid)
        }
    }

    @Test func reAuthenticateClearsDeviceAndUserQueuesAndResetsTheTally() async throws {
        try await TestStack.with { stack in
            let device = try stack.makeDevice()
            try await device.enroll()
            let userID = "USER-1"
            #expect(try await device.tokenUpdate(userID: userID).status == 200)
            #expect(try await device.tokenUpdate().status == 200)
            try await stack.enqueue(try makeCommand().plist, to: [device.udid])
            try await stack.enqueue(try makeCommand().plist, to: ["\(device.udid):\(userID)"])
            let pending = try makeCommand()
            try await stack.enqueue(pending.plist, to: [device.udid])
            #expect(try await device.idle().status == 200)
            #expect(try await stack.enrollment(device.udid)?.tokenUpdateTally == 2)

            #expect(try await device.authenticate().status == 200)
            let afterAuthenticate = try #require(try await stack.enrollment(device.udid))
            #expect(afterAuthenticate.tokenUpdateTally == 0)
            #expect(afterAuthenticate.enabled == false)
            #expect(try await device.idle().body.isEmpty)
            #expect(try await device.idle(userID: userID).body.isEmpty)

            #expect(try await device.tokenUpdate().status == 200)
            #expect(try await stack.enrollment(device.udid)?.tokenUpdateTally == 1)
        }
    }

    @Test func checkOutDisablesTheEnrollmentAndKeepsTheQueue() async throws {
        try await TestStack.with { stack in
            let device = try stack.makeDevice()
            try await device.enroll()
            let command = try makeCommand()
            try await stack.enqueue(command.plist, to: [device.udid])
            #expect(try await device.checkOut().status == 200)
            #expect(try await stack.enrollment(device.udid)?.enabled == false)
            #expect(try await device.idle().commandUUID() == command.uuid)
        }
    }

    @Test func commandsCanBeQueuedBeforeTokenUpdate() async throws {
        try await TestStack.with { stack in
            let device = try stack.makeDevice()
            #expect(try await device.authenticate().status == 200)
            let command = try makeCommand()
            #expect(try await stack.enqueue(command.plist, to: [device.udid]).status == 200)
            #expect(try await device.idle().commandUUID() == command.uuid)
        }
    }

    @Test func reportForAnUnknownCommandIsAcceptedAndTheNextCommandReturned() async throws {
        try await TestStack.with { stack in
            let device = try stack.makeDevice()
            try await device.enroll()
            let command = try makeCommand()
            try await stack.enqueue(command.plist, to: [device.udid])
            let reply = try await device.acknowledge("never-enqueued-\(UUID().uuidString)")
            #expect(reply.status == 200)
            #expect(try reply.commandUUID() == command.uuid)
        }
    }

    @Test func checkinOnTheCommandEndpointIsRefused() async throws {
        try await TestStack.with { stack in
            let device = try stack.makeDevice()
            try await device.enroll()
            let body = try PropertyListSerialization.data(
                fromPropertyList: ["MessageType": "CheckOut", "UDID": device.udid],
                format: .xml,
                options: 0
            )
            #expect(try await device.send(body: body, to: stack.commandURL).status == 400)
        }
    }

    @Test func manyDevicesPollConcurrentlyAndEachGetsItsOwnCommands() async throws {
        try await TestStack.with { stack in
            let count = 24
            var devices: [SimulatedDevice] = []
            for _ in 0..<count {
                let device = try stack.makeDevice()
                try await device.enroll()
                devices.append(device)
            }
            var expected: [String: [String]] = [:]
            for round in 0..<3 {
                let command = try makeCommand(uuid: "round-\(round)-\(UUID().uuidString)")
                try await stack.enqueue(command.plist, to: devices.map(\.udid))
                for device in devices { expected[device.udid, default: []].append(command.uuid) }
            }
            let received = try await withThrowingTaskGroup(of: (String, [String]).self) { group in
                for device in devices {
                    group.addTask {
                        var uuids: [String] = []
                        var reply = try await device.idle()
                        while let uuid = try reply.commandUUID() {
                            uuids.append(uuid)
                            reply = try await device.acknowledge(uuid)
                        }
                        return (device.udid, uuids)
                    }
                }
                var all: [String: [String]] = [:]
                for try await (udid, uuids) in group { all[udid] = uuids }
                return all
            }
            #expect(received == expected)
        }
    }
}

extension TestStack {
    /// Reads an enrollment straight from the database.
    func enrollment(_ id: String) async throws -> EnrollmentRecord? {
        try await database.withClient { client in
            try await PostgresEnrollmentStore(client: client, logger: TestStack.logger).fetchEnrollment(id: id)
        }
    }
}
