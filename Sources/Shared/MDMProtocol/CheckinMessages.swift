import Foundation

/// `Authenticate`: the first message of an enrolment.
package struct Authenticate: Sendable, Equatable, Decodable {
    package var topic: String?
    package var serialNumber: String?
    package var model: String?
    package var modelName: String?
    package var deviceName: String?
    package var productName: String?
    package var osVersion: String?
    package var buildVersion: String?
    package var imei: String?
    package var meid: String?

    enum CodingKeys: String, CodingKey {
        case topic = "Topic"
        case serialNumber = "SerialNumber"
        case model = "Model"
        case modelName = "ModelName"
        case deviceName = "DeviceName"
        case productName = "ProductName"
        case osVersion = "OSVersion"
        case buildVersion = "BuildVersion"
        case imei = "IMEI"
        case meid = "MEID"
    }
}

/// `TokenUpdate`: push information for a channel; makes it pushable.
package struct TokenUpdate: Sendable, Equatable, Decodable {
    package var topic: String
    package var pushMagic: String
    package var token: Data
    /// Device channel only.
    package var unlockToken: Data?
    package var awaitingConfiguration: Bool?

    enum CodingKeys: String, CodingKey {
        case topic = "Topic"
        case pushMagic = "PushMagic"
        case token = "Token"
        case unlockToken = "UnlockToken"
        case awaitingConfiguration = "AwaitingConfiguration"
    }
}

/// `CheckOut`: the device removed its MDM profile.
package struct CheckOut: Sendable, Equatable, Decodable {}

/// `UserAuthenticate`: a user channel asks to be allowed (macOS network users).
package struct UserAuthenticate: Sendable, Equatable, Decodable {
    /// Present on the second message of the digest exchange.
    package var digestResponse: String?

    enum CodingKeys: String, CodingKey {
        case digestResponse = "DigestResponse"
    }
}

/// `SetBootstrapToken`: an absent or empty token deletes the stored one.
package struct SetBootstrapToken: Sendable, Equatable, Decodable {
    package var bootstrapToken: Data?
    package var awaitingConfiguration: Bool?

    enum CodingKeys: String, CodingKey {
        case bootstrapToken = "BootstrapToken"
        case awaitingConfiguration = "AwaitingConfiguration"
    }
}

/// `GetBootstrapToken`: the device asks for its escrowed token.
package struct GetBootstrapToken: Sendable, Equatable, Decodable {
    package var awaitingConfiguration: Bool?

    enum CodingKeys: String, CodingKey {
        case awaitingConfiguration = "AwaitingConfiguration"
    }
}

/// `DeclarativeManagement`: a DDM request forwarded to the DDM server.
package struct DeclarativeManagement: Sendable, Equatable, Decodable {
    /// `tokens`, `declaration-items`, `status`, `declaration/…`.
    package var endpoint: String
    /// JSON body (status reports); absent or empty for GET-style requests.
    package var data: Data?

    enum CodingKeys: String, CodingKey {
        case endpoint = "Endpoint"
        case data = "Data"
    }
}

/// `GetToken`: the device asks for a token of a service type (for example
/// `com.apple.maid` for Managed Apple IDs).
package struct GetToken: Sendable, Equatable, Decodable {
    package var tokenServiceType: String

    enum CodingKeys: String, CodingKey {
        case tokenServiceType = "TokenServiceType"
    }
}

/// Every check-in message type the server handles (PROTOCOL.md §3).
package enum CheckinMessage: Sendable, Equatable {
    case authenticate(Authenticate)
    case tokenUpdate(TokenUpdate)
    case checkOut(CheckOut)
    case userAuthenticate(UserAuthenticate)
    case setBootstrapToken(SetBootstrapToken)
    case getBootstrapToken(GetBootstrapToken)
    case declarativeManagement(DeclarativeManagement)
    case getToken(GetToken)
}

/// A decoded check-in: who sent it, what it says, and its bytes verbatim.
package struct CheckinRequest: Sendable {
    package var messageType: String
    package var keys: EnrollmentKeys
    package var enrollment: EnrollmentIdentity
    package var message: CheckinMessage
    package var raw: Data

    private struct Envelope: Decodable {
        var messageType: String
        var keys: EnrollmentKeys

        enum CodingKeys: String, CodingKey {
            case messageType = "MessageType"
        }

        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            messageType = try container.decode(String.self, forKey: .messageType)
            keys = try EnrollmentKeys(from: decoder)
        }
    }

    /// Decodes a check-in body (XML or binary plist).
    package static func decode(_ body: Data) throws(MDMProtocolError) -> CheckinRequest {
        let envelope = try decodePropertyList(Envelope.self, from: body)
        let message = try decodeMessage(type: envelope.messageType, body: body)
        let enrollment = try envelope.keys.resolve()
        return CheckinRequest(
            messageType: envelope.messageType,
            keys: envelope.keys,
            enrollment: enrollment,
            message: message,
            raw: body
        )
    }

    private static func decodeMessage(type: String, body: Data) throws(MDMProtocolError) -> CheckinMessage {
        switch type {
        case "Authenticate": .authenticate(try decodePropertyList(Authenticate.self, from: body))
        case "TokenUpdate": .tokenUpdate(try decodePropertyList(TokenUpdate.self, from: body))
        case "CheckOut": .checkOut(try decodePropertyList(CheckOut.self, from: body))
        case "UserAuthenticate": .userAuthenticate(try decodePropertyList(UserAuthenticate.self, from: body))
        case "SetBootstrapToken": .setBootstrapToken(try decodePropertyList(SetBootstrapToken.self, from: body))
        case "GetBootstrapToken": .getBootstrapToken(try decodePropertyList(GetBootstrapToken.self, from: body))
        case "DeclarativeManagement":
            .declarativeManagement(try decodePropertyList(DeclarativeManagement.self, from: body))
        case "GetToken": .getToken(try decodePropertyList(GetToken.self, from: body))
        default: throw .unknownMessageType(type)
        }
    }
}
