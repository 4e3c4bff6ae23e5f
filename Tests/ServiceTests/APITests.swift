import Crypto
import Foundation
import MDMTestSupport
import SwiftASN1
import Testing
import X509

@testable import APIService

@Suite("APIService: enqueue, push certificates, auth, version")
struct APITests {
    @Test func enqueueReportsPerIDResultsAndCommandDetails() async throws {
        try await TestStack.with { stack in
            let device = try stack.makeDevice()
            try await device.enroll()
            let command = try makeCommand("DeviceInformation")
            let reply = try await stack.enqueue(command.plist, to: [device.udid], query: "?nopush=1")
            #expect(reply.status == 200)
            let json = try reply.json()
            #expect(json["command_uuid"] as? String == command.uuid)
            #expect(json["request_type"] as? String == "DeviceInformation")
            #expect(json["no_push"] as? Bool == true)
            let status = try #require(json["status"] as? [String: Any])
            #expect(status.keys.sorted() == [device.udid])
            #expect(json["command_error"] == nil)
        }
    }

    @Test func unknownIDsGetPerIDErrorsWhileOthersSucceedWith207() async throws {
        try await TestStack.with { stack in
            let device = try stack.makeDevice()
            try await device.enroll()
            let command = try makeCommand()
            let reply = try await stack.enqueue(command.plist, to: [device.udid, "no-such-device"])
            #expect(reply.status == 207)
            let status = try #require(try reply.json()["status"] as? [String: [String: String]])
            #expect(status["no-such-device"]?["command_error"] == "unknown enrollment ID")
            #expect(status[device.udid] == [:])
            #expect(try await device.idle().commandUUID() == command.uuid)
        }
    }

    @Test func duplicateCommandUUIDIs409() async throws {
        try await TestStack.with { stack in
            let device = try stack.makeDevice()
            try await device.enroll()
            let command = try makeCommand()
            #expect(try await stack.enqueue(command.plist, to: [device.udid]).status == 200)
            let again = try await stack.enqueue(command.plist, to: [device.udid])
            #expect(again.status == 409)
            #expect((try again.json()["command_error"] as? String)?.contains(command.uuid) == true)
        }
    }

    @Test func invalidCommandIs400() async throws {
        try await TestStack.with { stack in
            let notPlist = try await stack.enqueue(Data("hello".utf8), to: ["x"])
            #expect(notPlist.status == 400)
            #expect(try notPlist.json()["command_error"] != nil)
            let noRequestType = try PropertyListSerialization.data(
                fromPropertyList: ["CommandUUID": "u1", "Command": [String: String]()],
                format: .xml,
                options: 0
            )
            #expect(try await stack.enqueue(noRequestType, to: ["x"]).status == 400)
        }
    }

    @Test func emptyBodyIsPushOnlyAndUnknownIDsGetPushErrors() async throws {
        try await TestStack.with { stack in
            let device = try stack.makeDevice()
            try await device.enroll()
            let reply = try await stack.api(.POST, "/v1/enqueue/\(device.udid),ghost", body: nil)
            #expect(reply.status == 207)
            let status = try #require(try reply.json()["status"] as? [String: [String: String]])
            #expect(status["ghost"]?["push_error"] == "unknown enrollment ID")
            #expect(status[device.udid] == [:])
            let count = try await stack.database.withClient { client in
                let rows = try await client.query("SELECT count(*) FROM push_outbox", logger: TestStack.logger)
                var total = 0
                for try await (value) in rows.decode(Int.self) { total = value }
                return total
            }
            #expect(count == 1, "push intent for the known ID is recorded durably")
        }
    }

    @Test func apiKeyIsRequiredAsBasicOrBearer() async throws {
        try await TestStack.with { stack in
            let command = try makeCommand()
            let none = try await stack.api(.PUT, "/v1/enqueue/x", body: command.plist, authorization: nil)
            #expect(none.status == 401)
            #expect(
                none.headers.contains { $0.0.lowercased() == "www-authenticate" && $0.1 == "Basic realm=\"nanomdm\"" })
            let wrong = try await stack.api(.PUT, "/v1/enqueue/x", body: command.plist, authorization: "Bearer nope")
            #expect(wrong.status == 401)
            let wrongUser = Data("admin:\(stack.apiKey)".utf8).base64EncodedString()
            #expect(
                try await stack.api(.PUT, "/v1/enqueue/x", body: command.plist, authorization: "Basic \(wrongUser)")
                    .status == 401)
            #expect(
                try await stack.api(.PUT, "/v1/enqueue/x", body: command.plist, authorization: "basic").status == 207)
            #expect(try await stack.api(.GET, "/version", authorization: nil).status == 200)
        }
    }

    @Test func versionReportsTheBuildVersion() async throws {
        try await TestStack.with { stack in
            let reply = try await stack.api(.GET, "/version", authorization: nil)
            #expect(try reply.json()["version"] as? String == "0.1.0")
        }
    }

    @Test func pushCertificateUploadStoresTopicAndExpiry() async throws {
        try await TestStack.with { stack in
            let pushCert = try PushCertificateFactory.make(topic: "com.apple.mgmt.External.test-\(UUID().uuidString)")
            let reply = try await stack.api(.PUT, "/v1/pushcert", body: Data(pushCert.pem.utf8))
            #expect(reply.status == 200)
            let json = try reply.json()
            #expect(json["topic"] as? String == pushCert.topic)
            #expect(json["not_after"] as? String == pushCert.notAfterRFC3339)

            let fetched = try await stack.api(.GET, "/v1/pushcert?topic=\(pushCert.topic)")
            #expect(fetched.status == 200)
            #expect(try fetched.json()["topic"] as? String == pushCert.topic)
            #expect(try await stack.api(.GET, "/v1/pushcert?topic=com.apple.mgmt.none").status == 404)
        }
    }

    @Test func pushCertificateWithMismatchedKeyOrNoTopicIs400() async throws {
        try await TestStack.with { stack in
            let one = try PushCertificateFactory.make(topic: "com.apple.mgmt.one")
            let two = try PushCertificateFactory.make(topic: "com.apple.mgmt.two")
            let mismatched = one.certificatePEM + two.keyPEM
            #expect(try await stack.api(.PUT, "/v1/pushcert", body: Data(mismatched.utf8)).status == 400)
            let wrongTopic = try PushCertificateFactory.make(topic: "com.example.not-push")
            #expect(try await stack.api(.PUT, "/v1/pushcert", body: Data(wrongTopic.pem.utf8)).status == 400)
            #expect(try await stack.api(.PUT, "/v1/pushcert", body: Data("garbage".utf8)).status == 400)
        }
    }

    @Test func oversizeAPIBodyIs413() async throws {
        var options = TestStack.Options()
        options.maxBodyBytes = 2048
        try await TestStack.with(options: options) { stack in
            let big = try makeCommand(extra: ["Padding": String(repeating: "x", count: 4096)])
            #expect(try await stack.enqueue(big.plist, to: ["x"]).status == 413)
        }
    }

    @Test func healthEndpointsAnswer() async throws {
        try await TestStack.with { (stack: TestStack) async throws in
            #expect(try await stack.api(.GET, "/livez", authorization: nil).status == 200)
            #expect(try await stack.api(.GET, "/readyz", authorization: nil).status == 200)
        }
    }
}

/// Self-signed push certificates shaped like Apple's: the topic in the subject UID.
enum PushCertificateFactory {
    struct Made {
        var topic: String
        var certificatePEM: String
        var keyPEM: String
        var notAfter: Date
        var pem: String { certificatePEM + keyPEM }
        var notAfterRFC3339: String {
            let formatter = ISO8601DateFormatter()
            formatter.formatOptions = [.withInternetDateTime]
            return formatter.string(from: notAfter)
        }
    }

    static func make(topic: String) throws -> Made {
        let key = P256.Signing.PrivateKey()
        let privateKey = Certificate.PrivateKey(key)
        let notAfter = Date(timeIntervalSince1970: (Date().timeIntervalSince1970 + 86400 * 365).rounded(.down))
        let subject = DistinguishedName([
            RelativeDistinguishedName(
                RelativeDistinguishedName.Attribute(type: PushCertificateHandler.userIDAttribute, utf8String: topic)
            ),
            RelativeDistinguishedName(
                RelativeDistinguishedName.Attribute(type: .RDNAttributeType.commonName, utf8String: "APSP:\(topic)")
            ),
        ])
        let certificate = try Certificate(
            version: .v3,
            serialNumber: Certificate.SerialNumber(),
            publicKey: privateKey.publicKey,
            notValidBefore: Date() - 3600,
            notValidAfter: notAfter,
            issuer: subject,
            subject: subject,
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: Certificate.Extensions(),
            issuerPrivateKey: privateKey
        )
        return Made(
            topic: topic,
            certificatePEM: try certificate.serializeAsPEM().pemString + "\n",
            keyPEM: key.pemRepresentation + "\n",
            notAfter: notAfter
        )
    }
}
