import Foundation
import MDMBus
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
    /// Wait for the push outcomes (the default) or return once the pushes are queued (`?async=1`).
    var waitForPush = true
}

/// The enqueue and push rules of PROTOCOL.md §5, free of HTTP and SQL.
struct EnqueueHandler: Sendable {
    var queue: any CommandQueue
    var pusher: PushClient
    var metrics: MDMMetrics = .process

    static let unknownEnrollment = "unknown enrollment ID"

    func enqueue(_ request: EnqueueRequest) async throws -> APIResult {
        guard !request.enrollmentIDs.isEmpty else { throw RequestFailure.badRequest("no enrollment IDs") }
        guard !request.body.isEmpty else {
            guard !request.noPush else { throw RequestFailure.badRequest("empty command and nopush: nothing to do") }
            return try await push(request.enrollmentIDs, wait: request.waitForPush)
        }

        var result = APIResult(noPush: request.noPush ? true : nil)
        let command = try MDMCommand(plist: request.body)
        result.commandUUID = command.commandUUID
        result.requestType = command.requestType
        let intent = request.noPush ? nil : pusher.makeIntent()
        let outcome = try await queue.enqueue(
            NewCommand(
                commandUUID: command.commandUUID,
                requestType: command.requestType,
                plist: command.plist,
                priority: request.priority
            ),
            to: request.enrollmentIDs,
            pushIntent: intent
        )
        let unknown = Set(outcome.unknown)
        metrics.recordCommandsEnqueued(targets: outcome.queued.count)
        var delivery = PushDelivery()
        if let intent {
            delivery = await pusher.push(intent, to: outcome.queued, wait: request.waitForPush)
        }
        result.pushError = delivery.notice
        result.status = Self.statuses(request.enrollmentIDs) { id in
            unknown.contains(id)
                ? EnrollmentResult(commandError: Self.unknownEnrollment)
                : EnrollmentResult(delivery.results[id])
        }
        return result
    }

    /// `/v1/push/{ids}`, and `/v1/enqueue` with an empty body.
    func push(_ enrollmentIDs: [String], wait: Bool) async throws -> APIResult {
        guard !enrollmentIDs.isEmpty else { throw RequestFailure.badRequest("no enrollment IDs") }
        let intent = pusher.makeIntent()
        let unknown = Set(try await queue.recordPushIntent(intent, enrollmentIDs: enrollmentIDs))
        let delivery = await pusher.push(intent, to: enrollmentIDs.filter { !unknown.contains($0) }, wait: wait)
        var result = APIResult(pushError: delivery.notice)
        result.status = Self.statuses(enrollmentIDs) { id in
            unknown.contains(id)
                ? EnrollmentResult(pushError: Self.unknownEnrollment) : EnrollmentResult(delivery.results[id])
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

extension EnrollmentResult {
    init(_ push: PushResult?) {
        self.init(pushResult: push?.apnsID, pushError: push?.error)
    }
}
