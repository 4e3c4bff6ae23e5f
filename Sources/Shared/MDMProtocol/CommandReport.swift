import Foundation

/// What a report's `Status` means for the queue (PROTOCOL.md §4).
package enum ReportStatus: Sendable, Equatable {
    /// The device is ready for a command; nothing is stored.
    case idle
    /// The device cannot run the command now; the entry stays pending.
    case notNow
    /// `Acknowledged`, `Error`, `CommandFormatError` or any other status: stored, entry retired.
    case final(String)

    package init(_ status: String) {
        switch status {
        case "Idle": self = .idle
        case "NotNow": self = .notNow
        default: self = .final(status)
        }
    }
}

/// A report on `/mdm`: the result of the previous command (or `Idle`), and a request for
/// the next one.
package struct CommandReport: Sendable {
    /// `Status` verbatim.
    package var status: String
    package var commandUUID: String?
    package var keys: EnrollmentKeys
    package var enrollment: EnrollmentIdentity
    package var raw: Data

    package var reportStatus: ReportStatus { ReportStatus(status) }

    private struct Fields: Decodable {
        var status: String
        var commandUUID: String?
        var messageType: String?
        var keys: EnrollmentKeys

        enum CodingKeys: String, CodingKey {
            case status = "Status"
            case commandUUID = "CommandUUID"
            case messageType = "MessageType"
        }

        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            messageType = try container.decodeIfPresent(String.self, forKey: .messageType)
            status = try container.decodeIfPresent(String.self, forKey: .status) ?? ""
            commandUUID = try container.decodeIfPresent(String.self, forKey: .commandUUID)
            keys = try EnrollmentKeys(from: decoder)
        }
    }

    /// Decodes a report body (XML or binary plist). A check-in message sent here is refused:
    /// the proxy routes those to CheckinService by content type.
    package static func decode(_ body: Data) throws(MDMProtocolError) -> CommandReport {
        let fields = try decodePropertyList(Fields.self, from: body)
        if let messageType = fields.messageType {
            throw .unexpectedMessage("check-in \(messageType) sent to the command endpoint")
        }
        guard !fields.status.isEmpty else { throw .missingKey("Status") }
        let commandUUID = fields.commandUUID.flatMap { $0.isEmpty ? nil : $0 }
        return CommandReport(
            status: fields.status,
            commandUUID: commandUUID,
            keys: fields.keys,
            enrollment: try fields.keys.resolve(),
            raw: body
        )
    }
}
