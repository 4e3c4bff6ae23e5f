import Foundation
import MDMTestSupport
import Testing

@Suite("APIService: PUT /migration")
struct MigrationEndpointTests {
    static func plist(_ message: [String: Any]) throws -> Data {
        try PropertyListSerialization.data(fromPropertyList: message, format: .xml, options: 0)
    }

    @Test func replayedCheckinsEnrolAndTheDeviceIsBoundOnItsFirstRequest() async throws {
        var options = TestStack.Options()
        options.migrationEnabled = true
        options.retro = true
        try await TestStack.with(options: options) { stack in
            let device = try stack.makeDevice()
            let authenticate = try Self.plist([
                "MessageType": "Authenticate", "UDID": device.udid, "Topic": device.topic,
                "SerialNumber": device.serialNumber,
            ])
            let tokenUpdate = try Self.plist([
                "MessageType": "TokenUpdate", "UDID": device.udid, "Topic": device.topic,
                "PushMagic": device.pushMagic, "Token": device.token,
            ])
            // TokenUpdate before Authenticate: the device is unknown yet.
            #expect(try await stack.api(.PUT, "/migration", body: tokenUpdate).status == 400)
            #expect(try await stack.api(.PUT, "/migration", body: authenticate).status == 200)
            #expect(try await stack.api(.PUT, "/migration", body: tokenUpdate).status == 200)
            #expect(
                try await stack.database.count(
                    """
                    SELECT count(*) FROM enrollments WHERE id = '\(device.udid)' AND enabled
                        AND push_magic = '\(device.pushMagic)' AND topic = '\(device.topic)'
                    """) == 1)
            #expect(try await stack.database.count("SELECT count(*) FROM certificate_bindings") == 0)

            let command = try makeCommand()
            #expect(try await stack.enqueue(command.plist, to: [device.udid]).status == 200)
            #expect(try await device.idle().commandUUID() == command.uuid)
            #expect(try await stack.database.count("SELECT count(*) FROM certificate_bindings") == 1)
        }
    }

    @Test func otherMessagesMalformedBodiesAndMissingKeysAreRefused() async throws {
        var options = TestStack.Options()
        options.migrationEnabled = true
        try await TestStack.with(options: options) { stack in
            let checkOut = try Self.plist(["MessageType": "CheckOut", "UDID": "U-1", "Topic": "t"])
            #expect(try await stack.api(.PUT, "/migration", body: checkOut).status == 400)
            #expect(try await stack.api(.PUT, "/migration", body: Data("not a plist".utf8)).status == 400)
            let authenticate = try Self.plist(["MessageType": "Authenticate", "UDID": "U-1", "Topic": "t"])
            #expect(try await stack.api(.PUT, "/migration", body: authenticate, authorization: nil).status == 401)
        }
    }

    @Test func migrationIsOffUnlessEnabled() async throws {
        try await TestStack.with { stack in
            let authenticate = try Self.plist(["MessageType": "Authenticate", "UDID": "U-2", "Topic": "t"])
            #expect(try await stack.api(.PUT, "/migration", body: authenticate).status == 404)
        }
    }
}
