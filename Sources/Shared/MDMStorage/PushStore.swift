import Foundation

/// The push a request owes: outbox rows tagged with `requestID`, left alone for `redriveAfter`
/// while the request travels the bus, then re-driven by any PushService replica.
package struct PushIntent: Sendable, Equatable {
    package var requestID: String
    package var redriveAfter: Duration

    package init(requestID: String, redriveAfter: Duration) {
        self.requestID = requestID
        self.redriveAfter = redriveAfter
    }

    var redriveAfterSeconds: Double {
        redriveAfter.secondsValue
    }
}

extension Duration {
    /// The duration in (fractional) seconds, for SQL intervals.
    package var secondsValue: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}

/// What PushService needs to push one enrollment.
package struct PushTarget: Sendable, Equatable {
    package var enrollmentID: String
    package var topic: String
    package var tokenHex: String
    package var pushMagic: String
    /// `updated_at` of the topic's push certificate; `nil` when the topic has none.
    package var certificateVersion: Date?
    /// Set when APNs answered 410 Unregistered and no TokenUpdate came since.
    package var unregisteredAt: Date?

    package init(
        enrollmentID: String,
        topic: String,
        tokenHex: String,
        pushMagic: String,
        certificateVersion: Date?,
        unregisteredAt: Date? = nil
    ) {
        self.enrollmentID = enrollmentID
        self.topic = topic
        self.tokenHex = tokenHex
        self.pushMagic = pushMagic
        self.certificateVersion = certificateVersion
        self.unregisteredAt = unregisteredAt
    }
}

/// APNs' answer for one enrollment, as recorded on it.
package struct PushOutcomeRecord: Sendable, Equatable {
    package enum Kind: String, Sendable {
        /// Accepted; `detail` is the apns-id.
        case delivered
        /// 410; `detail` is APNs' reason.
        case unregistered
        /// A permanent refusal (400 BadDeviceToken, …); `detail` is APNs' reason.
        case rejected
        /// Not delivered for now (retries exhausted, no certificate, transport error).
        case failed
    }

    package var enrollmentID: String
    package var kind: Kind
    package var detail: String
    package var unregisteredAt: Date?

    package init(enrollmentID: String, kind: Kind, detail: String, unregisteredAt: Date? = nil) {
        self.enrollmentID = enrollmentID
        self.kind = kind
        self.detail = detail
        self.unregisteredAt = unregisteredAt
    }
}

/// One outbox row: the push `requestID` owes `enrollmentID`.
package struct OwedPush: Sendable, Hashable {
    package var requestID: String
    package var enrollmentID: String

    package init(requestID: String, enrollmentID: String) {
        self.requestID = requestID
        self.enrollmentID = enrollmentID
    }
}

/// Outbox rows claimed for re-driving, by the request that left them.
package struct DuePushes: Sendable, Equatable {
    package var requestID: String
    package var enrollmentIDs: [String]

    package init(requestID: String, enrollmentIDs: [String]) {
        self.requestID = requestID
        self.enrollmentIDs = enrollmentIDs
    }
}

/// Push delivery state in PostgreSQL: push info, outcomes and the outbox (DESIGN.md flow 4).
package protocol PushStore: Sendable {
    /// Push info for every ID that has it (a topic, a token and a PushMagic, and enabled), in
    /// one query; IDs without push info are missing from the result.
    func fetchPushTargets(enrollmentIDs: [String]) async throws -> [PushTarget]

    /// In one statement: records the outcomes on their enrollments, deletes the `settled`
    /// outbox rows and postpones the `deferred` ones by `redriveAfter`, counting the attempt.
    func recordPushOutcomes(
        _ outcomes: [PushOutcomeRecord],
        settled: [OwedPush],
        deferred: [OwedPush],
        redriveAfter: Duration
    ) async throws

    /// Claims up to `limit` outbox rows that are due, postponing each by `redriveAfter` so no
    /// other replica takes it meanwhile. Rows whose push already failed `maxAttempts` times are
    /// deleted instead (their count is returned) so a push APNs never accepts cannot circulate
    /// forever. Claiming does not count as an attempt: a bus outage costs nothing.
    func claimDuePushes(limit: Int, redriveAfter: Duration, maxAttempts: Int) async throws
        -> (due: [DuePushes], abandoned: Int)

    /// The bus refused the request: its rows are due now.
    func redriveNow(requestIDs: [String]) async throws
}
