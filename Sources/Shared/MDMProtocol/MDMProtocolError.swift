/// Something wrong with what a device or API client sent. Every case maps to 400.
package enum MDMProtocolError: Error, Sendable, Equatable {
    /// The body is not a property list (XML or binary), or its top level is not a dictionary.
    case malformedPlist(String)
    /// A key the message type requires is absent or has the wrong type.
    case missingKey(String)
    /// A check-in `MessageType` this server does not handle.
    case unknownMessageType(String)
    /// Neither `UDID` nor `EnrollmentID` was present.
    case missingEnrollmentID
    /// A message that belongs to the other device endpoint.
    case unexpectedMessage(String)
}
