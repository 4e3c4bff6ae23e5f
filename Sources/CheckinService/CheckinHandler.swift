import Foundation
import Hummingbird
import MDMIdentity
import MDMProtocol
import MDMServerSupport
import MDMStorage
import MDMWebhook

/// What CheckinService answers a device.
enum CheckinReply: Sendable, Equatable {
    case empty
    case plist(Data)
    /// `UserAuthenticate` declined: 410 tells the device not to ask again.
    case declined
    /// The DDM server's reply, verbatim.
    case forwarded(body: Data, contentType: String?)
}

/// Why a check-in was refused.
enum CheckinError: HTTPMappableError, Equatable {
    case certificateReuse(deviceID: String)
    case certificateNotBound(enrollmentID: String)
    case authenticateOnUserChannel(String)
    case unknownTokenService(String)
    case declarativeManagementNotConfigured
    case declarativeManagementFailed(String)
    case tokenServiceFailed(String)

    var status: HTTPResponse.Status {
        switch self {
        case .certificateReuse, .certificateNotBound, .authenticateOnUserChannel, .unknownTokenService: .badRequest
        case .declarativeManagementNotConfigured, .declarativeManagementFailed, .tokenServiceFailed:
            .internalServerError
        }
    }

    var reason: String {
        switch self {
        case .certificateReuse(let id): "identity certificate is bound to another device than \(id)"
        case .certificateNotBound(let id): "identity certificate is not bound to enrollment \(id)"
        case .authenticateOnUserChannel(let id): "Authenticate on user channel \(id)"
        case .unknownTokenService(let type): "no GetToken handler for \(type)"
        case .declarativeManagementNotConfigured: "no DDM server configured"
        case .declarativeManagementFailed(let detail): "DDM server: \(detail)"
        case .tokenServiceFailed(let detail): "GetToken handler: \(detail)"
        }
    }
}

/// Answers `GetToken` for one `TokenServiceType`.
protocol GetTokenHandler: Sendable {
    func tokenData(for checkin: CheckinRequest) async throws -> Data
}

/// Forwards `DeclarativeManagement` check-ins to the DDM server.
protocol DeclarativeManagementForwarding: Sendable {
    func forward(_ request: DeclarativeManagement, enrollment: EnrollmentIdentity) async throws -> CheckinReply
}

/// The check-in rules of PROTOCOL.md §3, free of HTTP and SQL.
struct CheckinHandler: Sendable {
    var store: any EnrollmentStore
    var declarativeManagement: (any DeclarativeManagementForwarding)?
    var tokenHandlers: [String: any GetTokenHandler]
    var userAuthenticateZeroLengthChallenge: Bool
    var retro: Bool
    var metrics: MDMMetrics = .process
    /// Set when a webhook receiver is configured: every accepted check-in then records its
    /// event in the statement that stores its effect.
    var webhook: WebhookEventRenderer? = nil

    /// `urlParameters`: the request's query, for the webhook event.
    func handle(_ checkin: CheckinRequest, identity: DeviceIdentity, urlParameters: [String: String] = [:])
        async throws -> CheckinReply
    {
        metrics.recordCheckin(messageType: checkin.messageType)
        let enrollment = checkin.enrollment
        let event = webhook?.checkinEvent(checkin, urlParameters: urlParameters)
        if case .authenticate(let message) = checkin.message {
            return try await authenticate(message, checkin: checkin, identity: identity, event: event)
        }
        try await requireBinding(identity, enrollment: enrollment)

        switch checkin.message {
        case .authenticate:
            return .empty
        case .tokenUpdate(let message):
            _ = try await store.saveTokenUpdate(TokenUpdateRecord(message, checkin: checkin, webhookEvent: event))
            return .empty
        case .checkOut:
            try await store.checkOut(enrollmentID: enrollment.id, webhookEvent: event)
            return .empty
        case .userAuthenticate(let message):
            try await store.markSeen(enrollmentID: enrollment.id, webhookEvent: event)
            guard userAuthenticateZeroLengthChallenge else { return .declined }
            if message.digestResponse == nil {
                return .plist(try encodePropertyList(DigestChallengeReply()))
            }
            return .empty
        case .setBootstrapToken(let message):
            try await store.saveBootstrapToken(
                deviceID: enrollment.deviceChannelID,
                token: message.bootstrapToken,
                webhookEvent: event
            )
            try await store.markSeen(enrollmentID: enrollment.id)
            return .empty
        case .getBootstrapToken:
            let token = try await store.fetchBootstrapToken(deviceID: enrollment.deviceChannelID)
            try await store.markSeen(enrollmentID: enrollment.id, webhookEvent: event)
            return .plist(try encodePropertyList(BootstrapTokenReply(bootstrapToken: token)))
        case .declarativeManagement(let message):
            // Recorded before forwarding: the event says the device asked, whatever the DDM
            // server answers.
            try await store.markSeen(enrollmentID: enrollment.id, webhookEvent: event)
            guard let declarativeManagement else { throw CheckinError.declarativeManagementNotConfigured }
            return try await declarativeManagement.forward(message, enrollment: enrollment)
        case .getToken(let message):
            guard let handler = tokenHandlers[message.tokenServiceType] else {
                throw CheckinError.unknownTokenService(message.tokenServiceType)
            }
            try await store.markSeen(enrollmentID: enrollment.id, webhookEvent: event)
            let data = try await handler.tokenData(for: checkin)
            return .plist(try encodePropertyList(GetTokenReply(tokenData: data)))
        }
    }

    private func authenticate(
        _ message: Authenticate,
        checkin: CheckinRequest,
        identity: DeviceIdentity,
        event: WebhookEventRecord?
    ) async throws -> CheckinReply {
        guard !checkin.enrollment.type.isUserChannel else {
            throw CheckinError.authenticateOnUserChannel(checkin.enrollment.id)
        }
        let record = AuthenticateRecord(
            enrollment: checkin.enrollment,
            serialNumber: message.serialNumber,
            topic: message.topic,
            certificateHash: identity.sha256,
            certificate: identity.der,
            rawMessage: checkin.raw,
            webhookEvent: event
        )
        switch try await store.authenticate(record) {
        case .allowed: return .empty
        case .boundToAnotherDevice, .notBound:
            throw CheckinError.certificateReuse(deviceID: checkin.enrollment.id)
        }
    }

    private func requireBinding(_ identity: DeviceIdentity, enrollment: EnrollmentIdentity) async throws {
        let decision = try await store.checkBinding(
            certificateHash: identity.sha256,
            deviceChannelID: enrollment.deviceChannelID,
            retro: retro
        )
        guard decision == .allowed else {
            throw CheckinError.certificateNotBound(enrollmentID: enrollment.id)
        }
    }
}
