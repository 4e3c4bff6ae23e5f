import Foundation
import Logging
import MDMBus
import MDMServerSupport
import MDMStorage

/// Sends one push to APNs; `APNsClient` in production.
protocol APNsSending: Sendable {
    func send(_ push: APNsPush) async -> APNsOutcome
}

/// The push rules (DESIGN.md flow 4) for a batch of requests, free of Redis and SQL: coalesce,
/// load push info once, send every push concurrently, record the outcomes, and say what each
/// waiting caller gets back.
struct PushHandler: Sendable {
    var store: any PushStore
    var sender: any APNsSending
    /// How long a push that failed for now waits before the outbox re-drives it.
    var redriveAfter: Duration
    /// Pushes in flight at once for one batch.
    var maxConcurrentPushes: Int
    /// Sent as `apns-expiration`: now plus this, or 0 ("now or never") for zero; `nil`, none.
    var expiration: Duration? = nil
    var metrics: MDMMetrics = .process
    var logger: Logger

    /// What the batch produced: one reply per request that asked for one.
    struct Handled: Sendable {
        var replies: [(key: String, reply: PushReply)]
        var pushesSent: Int
    }

    static let noPushInfo = "no push info for enrollment"

    func handle(_ requests: [PushRequest]) async throws -> Handled {
        // Coalescing: an enrollment named by several requests of the batch gets one push,
        // whose outcome answers all of them (APNs keeps only the latest MDM push anyway).
        var enrollmentIDs: [String] = []
        var seen: Set<String> = []
        var named = 0
        for request in requests {
            named += request.enrollmentIDs.count
            for id in request.enrollmentIDs where seen.insert(id).inserted { enrollmentIDs.append(id) }
        }
        for _ in 0..<(named - enrollmentIDs.count) { metrics.recordPush(.coalesced) }
        let targets = try await store.fetchPushTargets(enrollmentIDs: enrollmentIDs)

        var results: [String: PushResult] = [:]
        var outcomes: [PushOutcomeRecord] = []
        var transient: Set<String> = []
        var pushes: [(String, APNsPush)] = []
        let expiresAt = expiration.map { $0 == .zero ? Date(timeIntervalSince1970: 0) : Date() + $0.secondsValue }
        for target in targets {
            if let since = target.unregisteredAt {
                results[target.enrollmentID] = PushResult(
                    error: "unregistered with APNs since \(since.formatted(.iso8601)); waiting for a TokenUpdate")
            } else if let version = target.certificateVersion {
                pushes.append(
                    (
                        target.enrollmentID,
                        APNsPush(
                            topic: target.topic,
                            deviceToken: target.tokenHex,
                            pushMagic: target.pushMagic,
                            certificateVersion: version,
                            expiration: expiresAt
                        )
                    ))
            } else {
                // The certificate may be uploaded later: keep the push owed.
                let reason = "no push certificate for topic \(target.topic)"
                results[target.enrollmentID] = PushResult(error: reason)
                outcomes.append(PushOutcomeRecord(enrollmentID: target.enrollmentID, kind: .failed, detail: reason))
                transient.insert(target.enrollmentID)
            }
        }
        let pushing = Set(pushes.map(\.0))
        for id in enrollmentIDs where results[id] == nil && !pushing.contains(id) {
            results[id] = PushResult(error: Self.noPushInfo)
        }
        for _ in 0..<(enrollmentIDs.count - pushes.count) { metrics.recordPush(.skipped) }

        for (id, outcome) in await send(pushes) {
            let record = Self.record(outcome, for: id)
            outcomes.append(record)
            metrics.recordPush(Self.metricOutcome(record.kind))
            switch record.kind {
            case .delivered: results[id] = PushResult(apnsID: record.detail)
            case .failed:
                results[id] = PushResult(error: record.detail)
                transient.insert(id)
            case .unregistered, .rejected: results[id] = PushResult(error: record.detail)
            }
        }

        var settled: [OwedPush] = []
        var deferred: [OwedPush] = []
        for request in requests {
            for id in request.enrollmentIDs {
                let owed = OwedPush(requestID: request.requestID, enrollmentID: id)
                if transient.contains(id) { deferred.append(owed) } else { settled.append(owed) }
            }
        }
        try await store.recordPushOutcomes(outcomes, settled: settled, deferred: deferred, redriveAfter: redriveAfter)

        var replies: [(key: String, reply: PushReply)] = []
        for request in requests {
            guard let key = request.replyTo else { continue }
            var requestResults: [String: PushResult] = [:]
            for id in request.enrollmentIDs { requestResults[id] = results[id] }
            replies.append((key, PushReply(requestID: request.requestID, results: requestResults)))
        }
        return Handled(replies: replies, pushesSent: pushes.count)
    }

    /// Sends with at most `maxConcurrentPushes` in flight.
    private func send(_ pushes: [(String, APNsPush)]) async -> [(String, APNsOutcome)] {
        await withTaskGroup(of: (String, APNsOutcome).self) { group in
            var outcomes: [(String, APNsOutcome)] = []
            outcomes.reserveCapacity(pushes.count)
            var next = pushes.startIndex
            while next < pushes.endIndex, next - pushes.startIndex < maxConcurrentPushes {
                let (id, push) = pushes[next]
                group.addTask { (id, await timedSend(push)) }
                next += 1
            }
            while let outcome = await group.next() {
                outcomes.append(outcome)
                if next < pushes.endIndex {
                    let (id, push) = pushes[next]
                    group.addTask { (id, await timedSend(push)) }
                    next += 1
                }
            }
            return outcomes
        }
    }

    /// One push, retries included, timed for the APNs latency histogram.
    private func timedSend(_ push: APNsPush) async -> APNsOutcome {
        let start = ContinuousClock.now
        let outcome = await sender.send(push)
        metrics.recordAPNsRequest(duration: ContinuousClock.now - start)
        return outcome
    }

    static func metricOutcome(_ kind: PushOutcomeRecord.Kind) -> MDMMetrics.PushOutcome {
        switch kind {
        case .delivered: .sent
        case .unregistered: .unregistered
        case .rejected: .rejected
        case .failed: .failed
        }
    }

    static func record(_ outcome: APNsOutcome, for enrollmentID: String) -> PushOutcomeRecord {
        switch outcome {
        case .delivered(let apnsID):
            PushOutcomeRecord(enrollmentID: enrollmentID, kind: .delivered, detail: apnsID)
        case .unregistered(let since, let reason):
            PushOutcomeRecord(enrollmentID: enrollmentID, kind: .unregistered, detail: reason, unregisteredAt: since)
        case .rejected(let status, let reason):
            PushOutcomeRecord(enrollmentID: enrollmentID, kind: .rejected, detail: "\(status) \(reason)")
        case .failed(let reason):
            PushOutcomeRecord(enrollmentID: enrollmentID, kind: .failed, detail: reason)
        }
    }
}
