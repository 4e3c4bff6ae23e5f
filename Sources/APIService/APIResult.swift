/// Per-enrollment outcome, keys as NanoMDM's API.
struct EnrollmentResult: Encodable, Equatable, Sendable {
    var pushResult: String?
    var pushError: String?
    var commandError: String?

    enum CodingKeys: String, CodingKey {
        case pushResult = "push_result"
        case pushError = "push_error"
        case commandError = "command_error"
    }
}

/// The JSON body of `/v1/enqueue` and `/v1/push`, keys as NanoMDM's API; empty fields omitted.
struct APIResult: Encodable, Equatable, Sendable {
    var status: [String: EnrollmentResult]?
    var noPush: Bool?
    var pushError: String?
    var commandError: String?
    var commandUUID: String?
    var requestType: String?

    enum CodingKeys: String, CodingKey {
        case status
        case noPush = "no_push"
        case pushError = "push_error"
        case commandError = "command_error"
        case commandUUID = "command_uuid"
        case requestType = "request_type"
    }

    /// Whether any target failed (the reply is then 207).
    var hasTargetErrors: Bool {
        status?.values.contains { $0.commandError != nil || $0.pushError != nil } ?? false
    }
}
