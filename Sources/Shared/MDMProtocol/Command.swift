import Foundation

/// A command as an API client submits it: a raw plist whose bytes are delivered verbatim.
package struct MDMCommand: Sendable, Equatable {
    package var commandUUID: String
    package var requestType: String
    package var plist: Data

    private struct Fields: Decodable {
        var commandUUID: String
        var command: Body

        struct Body: Decodable {
            var requestType: String
            enum CodingKeys: String, CodingKey { case requestType = "RequestType" }
        }

        enum CodingKeys: String, CodingKey {
            case commandUUID = "CommandUUID"
            case command = "Command"
        }
    }

    /// Parses `CommandUUID` and `Command.RequestType` from an XML or binary plist and keeps
    /// the bytes as given.
    package init(plist: Data) throws(MDMProtocolError) {
        let fields = try decodePropertyList(Fields.self, from: plist)
        guard !fields.commandUUID.isEmpty else { throw .missingKey("CommandUUID") }
        guard !fields.command.requestType.isEmpty else { throw .missingKey("Command.RequestType") }
        self.commandUUID = fields.commandUUID
        self.requestType = fields.command.requestType
        self.plist = plist
    }
}
