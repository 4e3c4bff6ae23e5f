import Foundation
import Logging
import MDMBus
import MDMStorage

/// What became of a push request, as the API reports it.
struct PushDelivery: Sendable, Equatable {
    /// Outcomes that arrived, by enrollment ID.
    var results: [String: PushResult] = [:]
    /// Why some or all outcomes are missing although the pushes are still owed.
    var notice: String?
}

/// Asks PushService for pushes through the bus and, when asked to, waits for their outcomes.
/// The pushes are already owed in the outbox (same transaction as the enqueue), so a bus that
/// is down or slow delays them but loses none.
struct PushClient: Sendable {
    var bus: (any PushBus)?
    var listener: PushReplyListener?
    var store: any PushStore
    /// How long an owed push is left to the bus before the outbox re-drives it.
    var redriveAfter: Duration
    var waitTimeout: Duration
    var logger: Logger
    /// Enrollments per stream entry, so a large fan-out spreads over PushService replicas.
    var chunkSize = 500

    static let busUnavailable = "push bus unavailable: the pushes stay queued and are re-driven when it returns"
    static let noBus = "no push bus configured: PushService re-drives the queued pushes"

    /// A new push request: its ID tags the outbox rows the caller records with it.
    func makeIntent() -> PushIntent {
        PushIntent(requestID: UUID().uuidString, redriveAfter: bus == nil ? .zero : redriveAfter)
    }

    func push(_ intent: PushIntent, to enrollmentIDs: [String], wait: Bool) async -> PushDelivery {
        guard !enrollmentIDs.isEmpty else { return PushDelivery() }
        guard let bus else { return PushDelivery(notice: Self.noBus) }
        let replyTo = wait ? listener?.key : nil
        if replyTo != nil { listener?.expect(requestID: intent.requestID, enrollmentIDs: enrollmentIDs) }
        let requests = stride(from: 0, to: enrollmentIDs.count, by: chunkSize).map { start in
            PushRequest(
                requestID: intent.requestID,
                enrollmentIDs: Array(enrollmentIDs[start..<min(start + chunkSize, enrollmentIDs.count)]),
                replyTo: replyTo
            )
        }
        do {
            try await bus.publish(requests)
        } catch {
            listener?.forget(intent.requestID)
            logger.warning("push bus unavailable; pushes left to the outbox", metadata: ["error": "\(error)"])
            do {
                try await store.redriveNow(requestIDs: [intent.requestID])
            } catch {
                // The rows are still owed; they are re-driven after `redriveAfter` instead.
                logger.error("could not mark pushes for re-drive", metadata: ["error": "\(error)"])
            }
            return PushDelivery(notice: Self.busUnavailable)
        }
        guard let listener, replyTo != nil else { return PushDelivery() }
        let results = await listener.results(of: intent.requestID, timeout: waitTimeout)
        guard results.count < Set(enrollmentIDs).count else { return PushDelivery(results: results) }
        return PushDelivery(
            results: results,
            notice: "timed out after \(waitTimeout) waiting for push outcomes; the rest are still queued"
        )
    }
}
