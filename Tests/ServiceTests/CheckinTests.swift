import AsyncHTTPClient
import Foundation
import Hummingbird
import MDMProtocol
import MDMServerSupport
import MDMTestSupport
import NIOCore
import Testing

@testable import CheckinService

@Suite("CheckinService messages and device identity")
struct CheckinTests {
    @Test func certificateBoundToAnotherDeviceIsRefusedOnAuthenticate() async throws {
        try await TestStack.with { stack in
            let first = try stack.makeDevice()
            try await first.enroll()
            var second = try stack.makeDevice()
            second.identity = first.identity
            #expect(try await second.authenticate().status == 400)
            // The first device is untouched and still served.
            #expect(try await first.idle().status == 200)
        }
    }

    @Test func anotherDevicesCertificateOnThisEnrollmentIsRefused() async throws {
        try await TestStack.with { stack in
            let first = try stack.makeDevice()
            try await first.enroll()
            let second = try stack.makeDevice()
            try await second.enroll()
            var impostor = first
            impostor.identity = second.identity
            #expect(try await impostor.idle().status == 400)
            #expect(try await impostor.tokenUpdate().status == 400)
            #expect(try await impostor.checkOut().status == 400)
            #expect(try await stack.enrollment(first.udid)?.enabled == true)
        }
    }

    @Test func messagesBeforeAuthenticateAreRefused() async throws {
        try await TestStack.with { stack in
            let device = try stack.makeDevice()
            #expect(try await device.tokenUpdate().status == 400)
            #expect(try await device.idle().status == 400)
        }
    }

    @Test func reEnrolmentWithANewCertificateKeepsBothBound() async throws {
        try await TestStack.with { stack in
            var device = try stack.makeDevice()
            try await device.enroll()
            let oldIdentity = device.identity
            device.identity = try stack.ca.issueDeviceIdentity(commonName: "renewed")
            try await device.enroll()
            #expect(try await device.idle().status == 200)
            device.identity = oldIdentity
            #expect(try await device.idle().status == 200)
        }
    }

    @Test func missingOrInvalidSignatureIsRefusedWith400() async throws {
        try await TestStack.with { stack in
            let device = try stack.makeDevice()
            try await device.enroll()
            let body = device.reportBody(status: "Idle", commandUUID: nil)

            var unsigned = HTTPClientRequest(url: stack.commandURL)
            unsigned.method = .PUT
            unsigned.body = .bytes(ByteBuffer(bytes: body))
            #expect(try await HTTPClient.shared.execute(unsigned, timeout: TestStack.requestTimeout).status.code == 400)

            var forged = unsigned
            let otherBody = device.reportBody(status: "Idle", commandUUID: "tampered")
            forged.headers.add(name: "Mdm-Signature", value: try device.identity.mdmSignature(for: Array(otherBody)))
            #expect(try await HTTPClient.shared.execute(forged, timeout: TestStack.requestTimeout).status.code == 400)

            var garbage = unsigned
            garbage.headers.add(name: "Mdm-Signature", value: "bm90IGEgc2lnbmF0dXJl")
            #expect(try await HTTPClient.shared.execute(garbage, timeout: TestStack.requestTimeout).status.code == 400)
        }
    }

    @Test func certificateFromAnotherCAIsRefused() async throws {
        try await TestStack.with { stack in
            let foreign = try TestCertificateAuthority.make(commonName: "Foreign CA")
            let device = SimulatedDevice(
                identity: try foreign.issueDeviceIdentity(commonName: "foreign"),
                checkinURL: stack.checkinURL,
                commandURL: stack.commandURL
            )
            #expect(try await device.authenticate().status == 400)
        }
    }

    @Test func realDeviceSignatureStyleIsAccepted() async throws {
        try await TestStack.with { stack in
            let device = try stack.makeDevice(keyKind: .rsa2048, transport: .signature(.device))
            try await device.enroll()
            #expect(try await device.idle().status == 200)
        }
    }

    @Test func unknownMessageTypeAndMalformedPlistAre400() async throws {
        try await TestStack.with { stack in
            let device = try stack.makeDevice()
            try await device.enroll()
            #expect(try await device.checkin(["MessageType": "ReticulateSplines", "UDID": device.udid]).status == 400)
            let malformed = Data("<plist><dict><key>MessageType</key>".utf8)
            #expect(try await device.send(body: malformed, to: stack.checkinURL).status == 400)
            #expect(try await device.send(body: malformed, to: stack.commandURL).status == 400)
            #expect(try await device.checkin(["MessageType": "TokenUpdate", "UDID": device.udid]).status == 400)
        }
    }

    @Test func bootstrapTokenIsStoredReturnedAndClearedByReAuthenticate() async throws {
        try await TestStack.with { stack in
            let device = try stack.makeDevice()
            try await device.enroll()
            let token = Data("escrowed-bootstrap-token".utf8)

            let none = try await device.checkin(["MessageType": "GetBootstrapToken", "UDID": device.udid])
            #expect(none.status == 200)
            #expect(try none.plist()["BootstrapToken"] == nil)

            let set = try await device.checkin([
                "MessageType": "SetBootstrapToken", "UDID": device.udid, "BootstrapToken": token,
            ])
            #expect(set.status == 200)
            let got = try await device.checkin(["MessageType": "GetBootstrapToken", "UDID": device.udid])
            #expect(try got.plist()["BootstrapToken"] as? Data == token)

            #expect(try await device.authenticate().status == 200)
            let cleared = try await device.checkin(["MessageType": "GetBootstrapToken", "UDID": device.udid])
            #expect(try cleared.plist()["BootstrapToken"] == nil)
        }
    }

    @Test func emptySetBootstrapTokenDeletesTheToken() async throws {
        try await TestStack.with { stack in
            let device = try stack.makeDevice()
            try await device.enroll()
            _ = try await device.checkin([
                "MessageType": "SetBootstrapToken", "UDID": device.udid, "BootstrapToken": Data("t".utf8),
            ])
            #expect(try await device.checkin(["MessageType": "SetBootstrapToken", "UDID": device.udid]).status == 200)
            let got = try await device.checkin(["MessageType": "GetBootstrapToken", "UDID": device.udid])
            #expect(try got.plist()["BootstrapToken"] == nil)
        }
    }

    @Test func userAuthenticateIsDeclinedWith410ByDefault() async throws {
        try await TestStack.with { stack in
            let device = try stack.makeDevice()
            try await device.enroll()
            let reply = try await device.checkin([
                "MessageType": "UserAuthenticate", "UDID": device.udid, "UserID": "U1", "UserShortName": "u",
            ])
            #expect(reply.status == 410)
        }
    }

    @Test func zeroLengthDigestChallengeOptionAnswersThenAccepts() async throws {
        var options = TestStack.Options()
        options.zeroLengthChallenge = true
        try await TestStack.with(options: options) { stack in
            let device = try stack.makeDevice()
            try await device.enroll()
            let message: [String: Any] = [
                "MessageType": "UserAuthenticate", "UDID": device.udid, "UserID": "U1", "UserShortName": "u",
            ]
            let challenge = try await device.checkin(message)
            #expect(challenge.status == 200)
            #expect(try challenge.plist()["DigestChallenge"] as? String == "")
            var response = message
            response["DigestResponse"] = ""
            let accepted = try await device.checkin(response)
            #expect(accepted.status == 200)
            #expect(accepted.body.isEmpty)
        }
    }

    @Test func getTokenUsesTheRegisteredHandlerAndRefusesUnknownTypes() async throws {
        var options = TestStack.Options()
        options.tokenHandlers = ["com.example.token": StaticTokenHandler(token: Data("tok-123".utf8))]
        try await TestStack.with(options: options) { stack in
            let device = try stack.makeDevice()
            try await device.enroll()
            let known = try await device.checkin([
                "MessageType": "GetToken", "UDID": device.udid, "TokenServiceType": "com.example.token",
            ])
            #expect(known.status == 200)
            #expect(try known.plist()["TokenData"] as? Data == Data("tok-123".utf8))
            let unknown = try await device.checkin([
                "MessageType": "GetToken", "UDID": device.udid, "TokenServiceType": "com.apple.maid",
            ])
            #expect(unknown.status == 400)
        }
    }

    @Test func declarativeManagementIsForwardedWithEnrollmentHeadersAndHMAC() async throws {
        let recorder = RequestRecorder()
        let router = Router()
        router.get("ddm/tokens") { request, _ in
            await recorder.record(request, body: Data())
            return Response(
                status: .ok, headers: [.contentType: "application/json"],
                body: .init(byteBuffer: ByteBuffer(string: #"{"SyncTokens":{}}"#)))
        }
        router.put("ddm/status") { request, _ in
            let body = try await request.body.collect(upTo: 1 << 20)
            await recorder.record(request, body: Data(body.readableBytesView))
            return Response(status: .ok)
        }
        router.get("ddm/declaration-items") { _, _ in Response(status: .internalServerError) }
        let reporter = PortReporter()
        let ddmServer = Application(
            router: router,
            configuration: .init(address: .hostname("127.0.0.1", port: 0)),
            onServerRunning: { await reporter.report($0.localAddress?.port ?? 0) }
        )
        try await withRunningApplication(ddmServer, reporter: reporter) { ddmPort in
            var options = TestStack.Options()
            let base = try #require(URL(string: "http://127.0.0.1:\(ddmPort)/ddm"))
            options.declarativeManagement = DeclarativeManagementConfiguration(
                baseURL: base.appendingPathComponent(""),
                headers: [("Authorization", "Bearer ddm-secret")],
                hmacKey: Array("hmac-key".utf8)
            )
            try await TestStack.with(options: options) { stack in
                let device = try stack.makeDevice()
                try await device.enroll()
                let tokens = try await device.checkin([
                    "MessageType": "DeclarativeManagement", "UDID": device.udid, "Endpoint": "tokens",
                ])
                #expect(tokens.status == 200)
                #expect(String(decoding: tokens.body, as: UTF8.self) == #"{"SyncTokens":{}}"#)

                let status = Data(#"{"StatusItems":{}}"#.utf8)
                let put = try await device.checkin([
                    "MessageType": "DeclarativeManagement", "UDID": device.udid, "Endpoint": "status", "Data": status,
                ])
                #expect(put.status == 200)

                let failing = try await device.checkin([
                    "MessageType": "DeclarativeManagement", "UDID": device.udid, "Endpoint": "declaration-items",
                ])
                #expect(failing.status == 500)

                let seen = await recorder.requests
                #expect(seen.count == 2)
                let get = try #require(seen.first)
                #expect(get.method == "GET")
                #expect(get.headers["x-enrollment-id"] == device.udid)
                #expect(get.headers["x-enrollment-type"] == "Device")
                #expect(get.headers["authorization"] == "Bearer ddm-secret")
                #expect(
                    get.headers["x-hmac-signature"] == HMACSignature.base64(key: Array("hmac-key".utf8), body: Data()))
                let statusRequest = try #require(seen.last)
                #expect(statusRequest.method == "PUT")
                #expect(statusRequest.body == status)
                #expect(
                    statusRequest.headers["x-hmac-signature"]
                        == HMACSignature.base64(key: Array("hmac-key".utf8), body: status))
            }
        }
    }

    @Test func declarativeManagementWithoutAServerIs500() async throws {
        try await TestStack.with { stack in
            let device = try stack.makeDevice()
            try await device.enroll()
            let reply = try await device.checkin([
                "MessageType": "DeclarativeManagement", "UDID": device.udid, "Endpoint": "tokens",
            ])
            #expect(reply.status == 500)
        }
    }

    @Test func oversizeBodyIs413() async throws {
        var options = TestStack.Options()
        options.maxBodyBytes = 4096
        try await TestStack.with(options: options) { stack in
            let device = try stack.makeDevice()
            try await device.enroll()
            let big = try await device.checkin([
                "MessageType": "TokenUpdate", "UDID": device.udid, "Topic": "t", "PushMagic": "p",
                "Token": Data(repeating: 7, count: 8192),
            ])
            #expect(big.status == 413)
        }
    }

    @Test func forwardedCertificateHeaderModesIdentifyTheDevice() async throws {
        for escapedPEM in [false, true] {
            let ca = try TestCertificateAuthority.make()
            var options = TestStack.Options()
            options.identity = DeviceIdentityConfiguration(
                mode: .header, certificateHeader: "X-Client-Cert", trustRoots: [ca.certificate])
            try await TestStack.with(options: options) { stack in
                let device = SimulatedDevice(
                    identity: try ca.issueDeviceIdentity(commonName: "proxied"),
                    checkinURL: stack.checkinURL,
                    commandURL: stack.commandURL,
                    transport: .forwardedHeader(name: "X-Client-Cert", escapedPEM: escapedPEM)
                )
                try await device.enroll()
                #expect(try await device.idle().status == 200)
                // A signature alone is not accepted in header mode.
                var signed = device
                signed.transport = .signature(.modern)
                #expect(try await signed.idle().status == 400)
            }
        }
    }

    @Test func retroOptionBindsAnUnboundDeviceOnFirstSight() async throws {
        var options = TestStack.Options()
        options.retro = true
        try await TestStack.with(options: options) { stack in
            let device = try stack.makeDevice()
            // Simulates a migrated device: enrollment exists, no binding.
            #expect(try await device.authenticate().status == 200)
            try await stack.database.withClient { client in
                _ = try await client.query("DELETE FROM certificate_bindings", logger: TestStack.logger)
            }
            #expect(try await device.tokenUpdate().status == 200)
            var other = device
            other.identity = try stack.ca.issueDeviceIdentity(commonName: "other")
            #expect(try await other.idle().status == 400, "after binding, a different certificate is refused")
        }
    }
}

struct StaticTokenHandler: GetTokenHandler {
    var token: Data
    func tokenData(for checkin: CheckinRequest) async throws -> Data { token }
}

/// Collects requests a local test server received.
actor RequestRecorder {
    struct Recorded: Sendable {
        var method: String
        var path: String
        var headers: [String: String]
        var body: Data
    }

    private(set) var requests: [Recorded] = []

    func record(_ request: Request, body: Data) {
        var headers: [String: String] = [:]
        for field in request.headers { headers[field.name.canonicalName] = field.value }
        requests.append(Recorded(method: request.method.rawValue, path: request.uri.path, headers: headers, body: body))
    }
}
