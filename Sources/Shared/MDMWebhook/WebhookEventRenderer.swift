import Foundation
import MDMProtocol
import MDMStorage

/// Renders MicroMDM/NanoMDM webhook events (PROTOCOL.md §7) as the bytes that are stored and
/// sent, so receivers written for NanoMDM parse them unchanged.
///
/// The layout follows NanoMDM's generated Go structs and `encoding/json`: keys in struct order
/// (which is alphabetical), `omitempty` fields left out when empty, `url_params` keys sorted,
/// and strings escaped the way Go escapes them (`<`, `>`, `&`, U+2028 and U+2029 as `\u…`).
/// `event_id` and `created_at` are chosen here, before the statement that records the event.
package struct WebhookEventRenderer: Sendable {
    private let makeEventID: @Sendable () -> UUID
    private let now: @Sendable () -> Date

    package init(
        makeEventID: @escaping @Sendable () -> UUID = { UUID() },
        now: @escaping @Sendable () -> Date = { Date() }
    ) {
        self.makeEventID = makeEventID
        self.now = now
    }

    /// `mdm.<MessageType>` with a `checkin_event`. A `TokenUpdate` leaves a slot for the tally,
    /// which the store fills in the statement that increments it.
    package func checkinEvent(_ checkin: CheckinRequest, urlParameters: [String: String] = [:]) -> WebhookEventRecord {
        let topic = "mdm." + checkin.messageType
        var json = JSONWriter()
        json.raw(#"{"checkin_event":{"#)
        json.optionalField("enrollment_id", checkin.keys.enrollmentID, trailingComma: true)
        json.ids(checkin.enrollment)
        json.raw(",")
        json.key("raw_payload")
        json.base64String(checkin.raw)
        var head: [UInt8]?
        if checkin.messageType == "TokenUpdate" {
            json.raw(",")
            json.key("token_update_tally")
            head = json.bytes
            json = JSONWriter()
        }
        json.optionalField("udid", checkin.keys.udid, leadingComma: true)
        json.urlParameters(urlParameters)
        json.raw("},")
        let eventID = makeEventID()
        json.envelopeTail(createdAt: now(), eventID: eventID, topic: topic)
        guard let head else {
            return WebhookEventRecord(
                eventID: eventID, enrollmentID: checkin.enrollment.id, topic: topic, body: json.bytes)
        }
        return WebhookEventRecord(
            eventID: eventID,
            enrollmentID: checkin.enrollment.id,
            topic: topic,
            body: head,
            bodyAfterTally: json.bytes
        )
    }

    /// `mdm.Connect` with an `acknowledge_event`, for every report (Idle included). Like
    /// NanoMDM, `command_uuid` is always present (empty for Idle).
    package func acknowledgeEvent(_ report: CommandReport, urlParameters: [String: String] = [:])
        -> WebhookEventRecord
    {
        let topic = "mdm.Connect"
        var json = JSONWriter()
        json.raw(#"{"acknowledge_event":{"#)
        json.key("command_uuid")
        json.string(report.commandUUID ?? "")
        json.raw(",")
        json.optionalField("enrollment_id", report.keys.enrollmentID, trailingComma: true)
        json.ids(report.enrollment)
        json.raw(",")
        json.key("raw_payload")
        json.base64String(report.raw)
        json.raw(",")
        json.key("status")
        json.string(report.status)
        json.optionalField("udid", report.keys.udid, leadingComma: true)
        json.urlParameters(urlParameters)
        json.raw("},")
        let eventID = makeEventID()
        json.envelopeTail(createdAt: now(), eventID: eventID, topic: topic)
        return WebhookEventRecord(eventID: eventID, enrollmentID: report.enrollment.id, topic: topic, body: json.bytes)
    }
}

/// Appends JSON to a byte buffer, escaping strings like Go's `encoding/json`.
struct JSONWriter {
    private(set) var bytes: [UInt8] = []

    init() {
        bytes.reserveCapacity(512)
    }

    mutating func raw(_ text: String) {
        bytes.append(contentsOf: text.utf8)
    }

    mutating func key(_ name: String) {
        string(name)
        bytes.append(UInt8(ascii: ":"))
    }

    /// `omitempty`: nothing when `value` is nil or empty.
    mutating func optionalField(
        _ name: String,
        _ value: String?,
        leadingComma: Bool = false,
        trailingComma: Bool = false
    ) {
        guard let value, !value.isEmpty else { return }
        if leadingComma { bytes.append(UInt8(ascii: ",")) }
        key(name)
        string(value)
        if trailingComma { bytes.append(UInt8(ascii: ",")) }
    }

    /// `"ids":{"id":…,"parent_id":…,"type":…}`, `parent_id` only for user channels.
    mutating func ids(_ enrollment: EnrollmentIdentity) {
        raw(#""ids":{"#)
        key("id")
        string(enrollment.id)
        optionalField("parent_id", enrollment.parentID, leadingComma: true)
        raw(",")
        key("type")
        string(enrollment.type.rawValue)
        raw("}")
    }

    /// `,"url_params":{…}` with keys sorted by their bytes, like Go's map encoding; nothing when
    /// the request had no query.
    mutating func urlParameters(_ parameters: [String: String]) {
        guard !parameters.isEmpty else { return }
        raw(#","url_params":{"#)
        let sorted = parameters.sorted { Array($0.key.utf8).lexicographicallyPrecedes(Array($1.key.utf8)) }
        for (index, (name, value)) in sorted.enumerated() {
            if index > 0 { raw(",") }
            key(name)
            string(value)
        }
        raw("}")
    }

    /// `"created_at":…,"event_id":…,"topic":…}`: the end of every event.
    mutating func envelopeTail(createdAt: Date, eventID: UUID, topic: String) {
        key("created_at")
        string(RFC3339.format(createdAt))
        raw(",")
        key("event_id")
        string(eventID.uuidString.lowercased())
        raw(",")
        key("topic")
        string(topic)
        raw("}")
    }

    mutating func base64String(_ data: Data) {
        bytes.append(UInt8(ascii: "\""))
        bytes.append(contentsOf: data.base64EncodedString().utf8)
        bytes.append(UInt8(ascii: "\""))
    }

    mutating func string(_ value: String) {
        bytes.append(UInt8(ascii: "\""))
        let utf8 = Array(value.utf8)
        var index = 0
        while index < utf8.count {
            let byte = utf8[index]
            switch byte {
            case UInt8(ascii: "\""): raw(#"\""#)
            case UInt8(ascii: "\\"): raw(#"\\"#)
            case UInt8(ascii: "\n"): raw(#"\n"#)
            case UInt8(ascii: "\r"): raw(#"\r"#)
            case UInt8(ascii: "\t"): raw(#"\t"#)
            case 0x08: raw(#"\b"#)
            case 0x0C: raw(#"\f"#)
            // Go escapes these so the JSON is safe inside HTML.
            case UInt8(ascii: "<"), UInt8(ascii: ">"), UInt8(ascii: "&"), 0x00..<0x20:
                unicodeEscape(UInt16(byte))
            case 0xE2 where index + 2 < utf8.count && utf8[index + 1] == 0x80 && (utf8[index + 2] & 0xFE) == 0xA8:
                // U+2028 and U+2029 end lines in JavaScript; Go escapes them too.
                unicodeEscape(0x2028 | UInt16(utf8[index + 2] & 0x01))
                index += 2
            default:
                bytes.append(byte)
            }
            index += 1
        }
        bytes.append(UInt8(ascii: "\""))
    }

    private mutating func unicodeEscape(_ scalar: UInt16) {
        let hex = Array("0123456789abcdef".utf8)
        raw(#"\u"#)
        for shift in stride(from: 12, through: 0, by: -4) {
            bytes.append(hex[Int((scalar >> UInt16(shift)) & 0xF)])
        }
    }
}

/// RFC 3339 timestamps as Go's `time.Time` marshals them: UTC, fractional seconds without
/// trailing zeros (none at all for whole seconds).
enum RFC3339 {
    static func format(_ date: Date) -> String {
        let microseconds = Int64((date.timeIntervalSince1970 * 1_000_000).rounded(.down))
        var seconds = microseconds / 1_000_000
        var fraction = microseconds % 1_000_000
        if fraction < 0 {
            fraction += 1_000_000
            seconds -= 1
        }
        var days = seconds / 86_400
        var secondOfDay = seconds % 86_400
        if secondOfDay < 0 {
            secondOfDay += 86_400
            days -= 1
        }
        let (year, month, day) = civilDate(daysSinceEpoch: days)
        var text =
            pad(year, 4) + "-" + pad(month, 2) + "-" + pad(day, 2) + "T" + pad(secondOfDay / 3600, 2) + ":"
            + pad(secondOfDay / 60 % 60, 2) + ":" + pad(secondOfDay % 60, 2)
        if fraction > 0 {
            var digits = pad(fraction, 6)
            while digits.hasSuffix("0") { digits.removeLast() }
            text += "." + digits
        }
        return text + "Z"
    }

    private static func pad(_ value: Int64, _ width: Int) -> String {
        let digits = String(value)
        return String(repeating: "0", count: max(0, width - digits.count)) + digits
    }

    /// Proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
    private static func civilDate(daysSinceEpoch: Int64) -> (Int64, Int64, Int64) {
        let z = daysSinceEpoch + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let monthIndex = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * monthIndex + 2) / 5 + 1
        let month = monthIndex < 10 ? monthIndex + 3 : monthIndex - 9
        return (yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }
}
