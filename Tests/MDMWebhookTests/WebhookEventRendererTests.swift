import Foundation
import MDMProtocol
import MDMStorage
import Testing

@testable import MDMWebhook

@Suite("Webhook JSON as NanoMDM renders it")
struct WebhookEventRendererTests {
    static let eventID = UUID(uuid: (0xAB, 0xCD, 0, 0, 0, 0, 0x40, 0, 0x80, 0, 0, 0, 0, 0, 0, 1))
    static let renderer = WebhookEventRenderer(
        makeEventID: { eventID },
        now: { Date(timeIntervalSince1970: 1_700_000_000.25) }
    )

    static func plist(_ entries: [String: Any]) throws -> Data {
        try PropertyListSerialization.data(fromPropertyList: entries, format: .xml, options: 0)
    }

    static func text(_ record: WebhookEventRecord) -> String {
        String(decoding: record.body + (record.bodyAfterTally ?? []), as: UTF8.self)
    }

    @Test func checkOutEventHasTheCheckinShapeAndEnvelope() throws {
        let raw = try Self.plist(["MessageType": "CheckOut", "UDID": "U-1"])
        let record = Self.renderer.checkinEvent(try CheckinRequest.decode(raw))
        #expect(record.topic == "mdm.CheckOut")
        #expect(record.enrollmentID == "U-1")
        #expect(record.eventID == Self.eventID)
        #expect(record.bodyAfterTally == nil)
        let expected =
            #"{"checkin_event":{"ids":{"id":"U-1","type":"Device"},"raw_payload":""# + raw.base64EncodedString()
            + #"","udid":"U-1"},"created_at":"2023-11-14T22:13:20.25Z","#
            + #""event_id":"abcd0000-0000-4000-8000-000000000001","topic":"mdm.CheckOut"}"#
        #expect(Self.text(record) == expected)
    }

    @Test func tokenUpdateLeavesTheTallySlotBeforeTheUDID() throws {
        let raw = try Self.plist([
            "MessageType": "TokenUpdate", "UDID": "U-1", "Topic": "t", "PushMagic": "m", "Token": Data([1]),
        ])
        let record = Self.renderer.checkinEvent(try CheckinRequest.decode(raw))
        let head = String(decoding: record.body, as: UTF8.self)
        let tail = String(decoding: try #require(record.bodyAfterTally), as: UTF8.self)
        #expect(head.hasSuffix(#"","token_update_tally":"#))
        #expect(tail.hasPrefix(#","udid":"U-1"},"created_at":"#))
        let filled = Data(record.body + Array("7".utf8) + (record.bodyAfterTally ?? []))
        let json = try #require(try JSONSerialization.jsonObject(with: filled) as? [String: Any])
        let event = try #require(json["checkin_event"] as? [String: Any])
        #expect(event["token_update_tally"] as? Int == 7)
    }

    @Test func userEnrollmentCarriesEnrollmentIDAndParentAndNoUDID() throws {
        let raw = try Self.plist([
            "MessageType": "UserAuthenticate", "EnrollmentID": "E-1", "EnrollmentUserID": "EU-9",
        ])
        let record = Self.renderer.checkinEvent(try CheckinRequest.decode(raw))
        let text = Self.text(record)
        #expect(record.enrollmentID == "E-1:EU-9")
        #expect(
            text.hasPrefix(
                #"{"checkin_event":{"enrollment_id":"E-1","ids":{"id":"E-1:EU-9","parent_id":"E-1","#
                    + #""type":"User Enrollment"},"raw_payload":""#
            )
        )
        #expect(!text.contains("udid"))
        #expect(!text.contains("url_params"))
    }

    @Test func idleReportHasAnEmptyCommandUUIDAndSortedURLParameters() throws {
        let raw = try Self.plist(["Status": "Idle", "UDID": "U-2", "UserID": "USER"])
        let record = Self.renderer.acknowledgeEvent(
            try CommandReport.decode(raw),
            urlParameters: ["z": "last", "a": "first", "B": "upper"]
        )
        #expect(record.topic == "mdm.Connect")
        #expect(record.enrollmentID == "U-2:USER")
        let expected =
            #"{"acknowledge_event":{"command_uuid":"","ids":{"id":"U-2:USER","parent_id":"U-2","type":"User"},"#
            + #""raw_payload":""# + raw.base64EncodedString() + #"","status":"Idle","udid":"U-2","#
            + #""url_params":{"B":"upper","a":"first","z":"last"}},"created_at":"2023-11-14T22:13:20.25Z","#
            + #""event_id":"abcd0000-0000-4000-8000-000000000001","topic":"mdm.Connect"}"#
        #expect(Self.text(record) == expected)
    }

    @Test func stringsAreEscapedLikeGo() {
        var json = JSONWriter()
        json.string("q\"b\\n\nr\rt\tb\u{8}f\u{C}c\u{1}<>&\u{2028}\u{2029}é✓")
        #expect(
            String(decoding: json.bytes, as: UTF8.self)
                == #""q\"b\\n\nr\rt\tb\bf\fc\u0001\u003c\u003e\u0026\u2028\u2029é✓""#
        )
    }

    @Test func timestampsAreRFC3339InUTCWithoutTrailingZeros() {
        #expect(RFC3339.format(Date(timeIntervalSince1970: 0)) == "1970-01-01T00:00:00Z")
        #expect(RFC3339.format(Date(timeIntervalSince1970: 951_782_400.5)) == "2000-02-29T00:00:00.5Z")
        #expect(RFC3339.format(Date(timeIntervalSince1970: 1_700_000_000.123456)) == "2023-11-14T22:13:20.123456Z")
        #expect(RFC3339.format(Date(timeIntervalSince1970: -1)) == "1969-12-31T23:59:59Z")
    }

    @Test func eventsGetDistinctIDsAndTheCurrentTime() throws {
        let raw = try Self.plist(["Status": "Idle", "UDID": "U-3"])
        let report = try CommandReport.decode(raw)
        let before = Date()
        let first = WebhookEventRenderer().acknowledgeEvent(report)
        let second = WebhookEventRenderer().acknowledgeEvent(report)
        #expect(first.eventID != second.eventID)
        let json = try #require(try JSONSerialization.jsonObject(with: Data(first.body)) as? [String: Any])
        let createdAt = try #require(json["created_at"] as? String)
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        let parsed = try #require(formatter.date(from: createdAt) ?? ISO8601DateFormatter().date(from: createdAt))
        #expect(abs(parsed.timeIntervalSince(before)) < 60)
        #expect(json["event_id"] as? String == first.eventID.uuidString.lowercased())
    }
}
