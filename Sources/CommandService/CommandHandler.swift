import Hummingbird
import MDMIdentity
import MDMProtocol
import MDMServerSupport
import MDMStorage
import MDMWebhook

/// Why a report was refused.
enum CommandError: HTTPMappableError, Equatable {
    case certificateNotBound(enrollmentID: String)
    case certificateReuse(enrollmentID: String)

    var status: HTTPResponse.Status { .badRequest }

    var reason: String {
        switch self {
        case .certificateNotBound(let id): "identity certificate is not bound to enrollment \(id)"
        case .certificateReuse(let id): "identity certificate is bound to another device than \(id)"
        }
    }
}

/// The queue rules of PROTOCOL.md §4 from the device's side: one report in, the next command
/// out, in one database round trip.
struct CommandHandler: Sendable {
    var queue: any CommandQueue
    var retro: Bool
    var metrics: MDMMetrics = .process
    /// Set when a webhook receiver is configured: every accepted report (Idle included)
    /// records its `mdm.Connect` event inside the poll statement.
    var webhook: WebhookEventRenderer? = nil

    /// `urlParameters`: the request's query, for the webhook event.
    func handle(_ report: CommandReport, identity: DeviceIdentity, urlParameters: [String: String] = [:])
        async throws -> QueuedCommand?
    {
        metrics.recordCommandReport(status: report.status)
        let poll = CommandPoll(
            enrollmentID: report.enrollment.id,
            deviceChannelID: report.enrollment.deviceChannelID,
            certificateHash: identity.sha256,
            status: report.status,
            commandUUID: report.commandUUID,
            rawReport: report.raw,
            retro: retro,
            webhookEvent: webhook?.acknowledgeEvent(report, urlParameters: urlParameters)
        )
        switch try await queue.poll(poll) {
        case .next(let command):
            return command
        case .refused(.boundToAnotherDevice):
            throw CommandError.certificateReuse(enrollmentID: report.enrollment.id)
        case .refused:
            throw CommandError.certificateNotBound(enrollmentID: report.enrollment.id)
        }
    }
}
