import Foundation
import MDMProtocol
import MDMServerSupport
import MDMStorage

/// An enqueue (or push-only) request as the API received it.
struct EnqueueRequest: Sendable {
    var enrollmentIDs: [String]
    /// Empty means push only.
    var body: Data
    var noPush: Bool
    var priority: Int16
}

/// The enqueue rules of PROTOCOL.md §5, free of HTTP and SQL.
struct EnqueueHandler: Sendable {
    var queue: any CommandQueue
    var metrics: MDMMetrics = .process

    static let unknownEnrollment = "unknown enrollment ID"

    func enqueue(_ request: EnqueueRequest) async throws -> APIResult {
        guard !request.enrollmentIDs.isEmpty else { throw RequestFailure.badRequest("no enrollment IDs") }
        var result = APIResult(noPush: request.noPush ? true : nil)

        guard !request.body.isEmpty else {
            guard !request.noPush else { throw RequestFailure.badRequest("empty command and nopush: nothing to do") }
            let unknown = Set(try await queue.recordPushIntent(enrollmentIDs: request.enrollmentIDs))
            result.status = Self.statuses(request.enrollmentIDs) { id in
                unknown.contains(id) ? EnrollmentResult(pushError: Self.unknownEnrollment) : EnrollmentResult()
            }
            return result
        }

        let command = try MDMCommand(plist: request.body)
        result.commandUUID = command.commandUUID
        result.requestType = command.requestType
        let outcome = try await queue.enqueue(
            NewCommand(
                commandUUID: command.commandUUID,
                requestType: command.requestType,
                plist: command.plist,
                priority: request.priority
            ),
            to: request.enrollmentIDs,
            recordPushIntent: !request.noPush
        )
        let unknown = Set(outcome.unknown)
        metrics.recordCommandsEnqueued(targets: request.enrollmentIDs.count - unknown.count)
        result.status = Self.statuses(request.enrollmentIDs) { id in
            unknown.contains(id) ? EnrollmentResult(commandError: Self.unknownEnrollment) : EnrollmentResult()
        }
        return result
    }

    private static func statuses(_ ids: [String], _ result: (String) -> EnrollmentResult) -> [String: EnrollmentResult]
    {
        var statuses: [String: EnrollmentResult] = [:]
        for id in ids { statuses[id] = result(id) }
        return statuses
    }
}
