import Foundation
import Testing

@testable import MDMProtocol

@Suite("Command reports and commands (PROTOCOL.md §4)")
struct CommandReportTests {
    @Test func idleReportHasNoCommandUUID() throws {
        let report = try CommandReport.decode(Fixture.data("Report.Idle.plist"))
        #expect(report.reportStatus == .idle)
        #expect(report.commandUUID == nil)
        #expect(report.enrollment.id == "663b07bb783e9ade1dae4fbb92ea12afc0ce5b69")
    }

    @Test func acknowledgedReportIsFinal() throws {
        let body = try Fixture.data("DeviceInformation.1.plist")
        let report = try CommandReport.decode(body)
        #expect(report.reportStatus == .final("Acknowledged"))
        #expect(report.commandUUID == "76eda240-5488-4989-8339-f2ae160113c4")
        #expect(report.raw == body)
    }

    @Test func notNowAndErrorStatuses() throws {
        #expect(try CommandReport.decode(Fixture.data("Report.NotNow.plist")).reportStatus == .notNow)
        let error = try CommandReport.decode(Fixture.data("Report.Error.plist"))
        #expect(error.reportStatus == .final("Error"))
        #expect(ReportStatus("CommandFormatError") == .final("CommandFormatError"))
    }

    @Test func userChannelReportAddressesTheUserQueue() throws {
        let report = try CommandReport.decode(Fixture.data("Report.userchannel.plist"))
        #expect(report.enrollment.type == .user)
        #expect(report.enrollment.parentID == "663b07bb783e9ade1dae4fbb92ea12afc0ce5b69")
    }

    @Test func reportWithoutStatusIsRefused() {
        #expect(throws: MDMProtocolError.missingKey("Status")) {
            try CommandReport.decode(Data(encodedPlist: ["UDID": "X"]))
        }
    }

    @Test func checkinSentToTheCommandEndpointIsRefused() {
        #expect {
            try CommandReport.decode(Fixture.data("Authenticate.1.plist"))
        } throws: { error in
            guard case .unexpectedMessage = error as? MDMProtocolError else { return false }
            return true
        }
    }

    @Test func commandKeepsItsBytesAndReadsUUIDAndRequestType() throws {
        let body = try Fixture.data("Command.ProfileList.plist")
        let command = try MDMCommand(plist: body)
        #expect(command.commandUUID == "5d8a7c0e-1b2f-4d1a-9e7e-7b2f6c0b9a11")
        #expect(command.requestType == "ProfileList")
        #expect(command.plist == body)
    }

    @Test func binaryCommandIsAccepted() throws {
        let command = try MDMCommand(plist: Fixture.data("Command.binary.plist"))
        #expect(command.requestType == "DeviceInformation")
    }

    @Test func commandWithoutRequestTypeIsRefused() {
        #expect(throws: MDMProtocolError.missingKey("Command.RequestType")) {
            try MDMCommand(plist: Fixture.data("Command.missingRequestType.plist"))
        }
    }

    @Test func commandWithoutUUIDIsRefused() {
        #expect(throws: MDMProtocolError.missingKey("CommandUUID")) {
            try MDMCommand(plist: Data(encodedPlist: ["Command": ["RequestType": "ProfileList"]]))
        }
    }

    @Test func repliesEncodeAsPlists() throws {
        let token = Data([1, 2, 3])
        let reply = try encodePropertyList(BootstrapTokenReply(bootstrapToken: token))
        #expect(try PropertyListDecoder().decode(BootstrapTokenReply.self, from: reply).bootstrapToken == token)
        let empty = try encodePropertyList(BootstrapTokenReply(bootstrapToken: nil))
        #expect(!String(decoding: empty, as: UTF8.self).contains("BootstrapToken"))
        let challenge = try encodePropertyList(DigestChallengeReply())
        #expect(String(decoding: challenge, as: UTF8.self).contains("<key>DigestChallenge</key>"))
    }
}

extension Data {
    init(encodedPlist value: [String: Any]) throws {
        self = try PropertyListSerialization.data(fromPropertyList: value, format: .xml, options: 0)
    }
}
