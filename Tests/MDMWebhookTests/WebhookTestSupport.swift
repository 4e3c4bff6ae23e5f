import Foundation
import Logging
import MDMStorage
import MDMTestSupport
import MDMWebhook
import PostgresNIO
import Testing

enum WebhookTest {
    static let logger: Logger = {
        var logger = Logger(label: "mdm.webhook-tests")
        logger.logLevel =
            ProcessInfo.processInfo.environment["MDM_TEST_LOG_LEVEL"].flatMap { Logger.Level(rawValue: $0) }
            ?? .critical
        return logger
    }()

    /// Fast retries, so tests that fail deliveries finish quickly.
    static func configuration(
        receiver: WebhookReceiver,
        concurrency: Int = 4,
        hmacKey: [UInt8]? = nil,
        maxAttempts: Int? = nil,
        lease: Duration? = nil
    ) throws -> WebhookConfiguration {
        WebhookConfiguration(
            url: try #require(URL(string: receiver.url)),
            hmacKey: hmacKey,
            // Generous: on a loaded CI machine a slow answer must not count as a failed (and
            // then repeated) delivery; the tests that need failures script them.
            timeout: .seconds(30),
            concurrency: concurrency,
            retryMinimum: .milliseconds(20),
            retryMaximum: .milliseconds(200),
            expiry: WebhookExpiry(maxAge: .seconds(3600), maxAttempts: maxAttempts),
            pollInterval: .milliseconds(50),
            lease: lease
        )
    }

    /// Runs a worker with its own PostgreSQL pool (as a separate process would) while `body`
    /// runs, then cancels it.
    static func withWorker<T: Sendable>(
        database: TestDatabase,
        configuration: WebhookConfiguration,
        _ body: @escaping @Sendable (WebhookWorker) async throws -> T
    ) async throws -> T {
        try await database.withClient { client in
            let worker = WebhookWorker(configuration: configuration, database: client, logger: logger)
            return try await withThrowingTaskGroup(of: Void.self, returning: T.self) { group in
                group.addTask { try await worker.run() }
                defer { group.cancelAll() }
                return try await body(worker)
            }
        }
    }

    /// Records an event for `enrollmentID` whose body names it and its sequence number.
    static func record(
        enrollmentID: String,
        sequence: Int,
        store: PostgresEnrollmentStore,
        marker: String = ""
    ) async throws -> WebhookEventRecord {
        let body = #"{"enrollment":"\#(enrollmentID)","sequence":\#(sequence),"marker":"\#(marker)"}"#
        let event = WebhookEventRecord(
            eventID: UUID(),
            enrollmentID: enrollmentID,
            topic: "mdm.Test",
            body: Array(body.utf8)
        )
        try await store.markSeen(enrollmentID: enrollmentID, webhookEvent: event)
        return event
    }

    struct TestBody: Decodable, Equatable {
        var enrollment: String
        var sequence: Int
    }

    static func decode(_ received: WebhookReceiver.Received) throws -> TestBody {
        try JSONDecoder().decode(TestBody.self, from: Data(received.body))
    }

    /// `state` of every event, by database ID.
    static func states(_ client: PostgresClient) async throws -> [Int64: String] {
        var states: [Int64: String] = [:]
        let rows = try await client.query("SELECT id, state FROM webhook_events", logger: logger)
        for try await (id, state) in rows.decode((Int64, String).self) {
            states[id] = state
        }
        return states
    }
}
