import Foundation
import Testing

@testable import MDMProtocol

@Suite("Check-in messages decode (PROTOCOL.md §3)")
struct CheckinMessageTests {
    let udid = "663b07bb783e9ade1dae4fbb92ea12afc0ce5b69"
    let topic = "com.apple.mgmt.External.e0bd1eac-1f17-4c8e-8a63-dd17d3dd35d9"

    @Test func authenticateFixtureDecodes() throws {
        let request = try CheckinRequest.decode(Fixture.data("Authenticate.1.plist"))
        #expect(request.messageType == "Authenticate")
        #expect(request.enrollment == EnrollmentIdentity(id: udid, type: .device))
        guard case .authenticate(let message) = request.message else {
            Issue.record("expected Authenticate, got \(request.message)")
            return
        }
        #expect(message.serialNumber == "F5JM992LF193")
        #expect(message.topic == topic)
        #expect(message.productName == "iPad2,5")
    }

    @Test func rawBytesAreKeptVerbatim() throws {
        let body = try Fixture.data("Authenticate.1.plist")
        #expect(try CheckinRequest.decode(body).raw == body)
    }

    @Test func tokenUpdateFixtureDecodesTokenAndUnlockToken() throws {
        let request = try CheckinRequest.decode(Fixture.data("TokenUpdate.1.plist"))
        guard case .tokenUpdate(let message) = request.message else {
            Issue.record("expected TokenUpdate")
            return
        }
        #expect(message.pushMagic == "CEFDF0BD-E342-4A27-8742-E930EA116B0A")
        #expect(message.token == Data(base64Encoded: "R+juwGLC9ynsFwPBs+GPGXHYXwC+dkRdNAgLqnAbX1E="))
        #expect(message.unlockToken?.prefix(4) == Data("DATA".utf8))
        #expect(message.awaitingConfiguration == false)
    }

    @Test func binaryPlistDecodes() throws {
        let body = try Fixture.data("TokenUpdate.binary.plist")
        #expect(body.prefix(6) == Data("bplist".utf8))
        let request = try CheckinRequest.decode(body)
        guard case .tokenUpdate(let message) = request.message else {
            Issue.record("expected TokenUpdate")
            return
        }
        #expect(message.token == Data(0..<32))
    }

    @Test func userChannelTokenUpdateResolvesToTheUserChannel() throws {
        let request = try CheckinRequest.decode(Fixture.data("TokenUpdate.user.plist"))
        #expect(request.enrollment.id == "\(udid):A1B2C3D4-0000-1111-2222-333344445555")
        #expect(request.enrollment.type == .user)
        #expect(request.keys.userShortName == "alice")
        #expect(request.keys.userLongName == "Alice Appleseed")
    }

    @Test func sharedIPadTokenUpdateUsesTheShortName() throws {
        let request = try CheckinRequest.decode(Fixture.data("TokenUpdate.sharedipad.plist"))
        #expect(request.enrollment == EnrollmentIdentity(id: "\(udid):student7", type: .sharedIPad, parentID: udid))
    }

    @Test func userEnrollmentMessagesResolveByEnrollmentID() throws {
        let authenticate = try CheckinRequest.decode(Fixture.data("Authenticate.userenrollment.plist"))
        #expect(authenticate.enrollment == EnrollmentIdentity(id: "UE-9F3A6C", type: .userEnrollmentDevice))
        let tokenUpdate = try CheckinRequest.decode(Fixture.data("TokenUpdate.userenrollment.plist"))
        #expect(
            tokenUpdate.enrollment
                == EnrollmentIdentity(id: "UE-9F3A6C:UEU-77AA", type: .userEnrollment, parentID: "UE-9F3A6C")
        )
    }

    @Test func checkOutDecodes() throws {
        let request = try CheckinRequest.decode(Fixture.data("CheckOut.1.plist"))
        #expect(request.message == .checkOut(CheckOut()))
    }

    @Test func userAuthenticateCarriesTheDigestResponseOnlyOnTheSecondMessage() throws {
        let first = try CheckinRequest.decode(Fixture.data("UserAuthenticate.1.plist"))
        #expect(first.message == .userAuthenticate(UserAuthenticate(digestResponse: nil)))
        let second = try CheckinRequest.decode(Fixture.data("UserAuthenticate.2.plist"))
        #expect(second.message == .userAuthenticate(UserAuthenticate(digestResponse: "")))
    }

    @Test func bootstrapTokenMessagesDecode() throws {
        let set = try CheckinRequest.decode(Fixture.data("SetBootstrapToken.1.plist"))
        #expect(
            set.message
                == .setBootstrapToken(
                    SetBootstrapToken(
                        bootstrapToken: Data("bootstrap-token-bytes-0123456789".utf8),
                        awaitingConfiguration: false
                    )
                )
        )
        let get = try CheckinRequest.decode(Fixture.data("GetBootstrapToken.1.plist"))
        #expect(get.message == .getBootstrapToken(GetBootstrapToken(awaitingConfiguration: true)))
    }

    @Test func declarativeManagementWithAndWithoutData() throws {
        let tokens = try CheckinRequest.decode(Fixture.data("DeclarativeManagement.1.plist"))
        #expect(tokens.message == .declarativeManagement(DeclarativeManagement(endpoint: "tokens", data: nil)))
        let status = try CheckinRequest.decode(Fixture.data("DeclarativeManagement.2.plist"))
        guard case .declarativeManagement(let message) = status.message else {
            Issue.record("expected DeclarativeManagement")
            return
        }
        #expect(message.endpoint == "status")
        let json = try #require(message.data)
        #expect(try JSONSerialization.jsonObject(with: json) is [String: Any])
    }

    @Test func getTokenDecodesTheServiceType() throws {
        let request = try CheckinRequest.decode(Fixture.data("GetToken.1.plist"))
        #expect(request.message == .getToken(GetToken(tokenServiceType: "com.apple.maid")))
    }

    @Test func unknownMessageTypeIsRefused() {
        #expect(throws: MDMProtocolError.unknownMessageType("ReticulateSplines")) {
            try CheckinRequest.decode(Fixture.data("Unknown.MessageType.plist"))
        }
    }

    @Test func malformedPlistIsRefused() throws {
        let body = try Fixture.data("Malformed.plist")
        #expect {
            try CheckinRequest.decode(body)
        } throws: { error in
            guard case .malformedPlist = error as? MDMProtocolError else { return false }
            return true
        }
        #expect {
            try CheckinRequest.decode(Data("not a plist at all".utf8))
        } throws: { error in
            guard case .malformedPlist = error as? MDMProtocolError else { return false }
            return true
        }
    }

    @Test func missingRequiredKeyNamesTheKey() {
        #expect(throws: MDMProtocolError.missingKey("Token")) {
            try CheckinRequest.decode(Fixture.data("TokenUpdate.missingToken.plist"))
        }
    }

    @Test func missingMessageTypeIsRefused() {
        #expect(throws: MDMProtocolError.missingKey("MessageType")) {
            try CheckinRequest.decode(Fixture.data("Report.Idle.plist"))
        }
    }

    @Test func missingIdentityIsRefused() {
        #expect(throws: MDMProtocolError.missingEnrollmentID) {
            try CheckinRequest.decode(Fixture.data("Authenticate.noIdentity.plist"))
        }
    }
}
