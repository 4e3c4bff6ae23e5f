import Hummingbird
import Logging
import MDMStorage
import PostgresNIO

/// A dependency `/readyz` checks; throws when the role cannot serve.
package struct ReadinessCheck: Sendable {
    package var name: String
    package var check: @Sendable () async throws -> Void

    package init(name: String, check: @escaping @Sendable () async throws -> Void) {
        self.name = name
        self.check = check
    }

    /// PostgreSQL is reachable and its schema is at least the version this build needs.
    package static func database(_ client: PostgresClient, logger: Logger) -> ReadinessCheck {
        ReadinessCheck(name: "postgres") {
            try await PostgresHealthCheck(client: client, logger: logger).requireCurrentSchema()
        }
    }
}

/// `GET /livez` (the process is up) and `GET /readyz` (every dependency answers).
package struct HealthController: Sendable {
    package var checks: [ReadinessCheck]
    /// Bounds each check so a hung dependency turns readiness red instead of hanging probes.
    package var timeout: Duration

    package init(checks: [ReadinessCheck], timeout: Duration = .seconds(2)) {
        self.checks = checks
        self.timeout = timeout
    }

    package func addRoutes<Context: RequestContext>(to router: Router<Context>) {
        router.get("livez") { _, _ in
            Response(
                status: .ok, headers: [.contentType: "text/plain"], body: .init(byteBuffer: ByteBuffer(string: "ok\n")))
        }
        router.get("readyz") { _, context in
            await self.readiness(logger: context.logger)
        }
    }

    func readiness(logger: Logger) async -> Response {
        var failures: [String] = []
        for check in checks {
            do {
                try await withTimeout(timeout) { try await check.check() }
            } catch {
                failures.append("\(check.name): \(ErrorClassifier.classify(error).reason)")
                logger.notice("readiness check failed", metadata: ["check": "\(check.name)", "error": "\(error)"])
            }
        }
        let text = failures.isEmpty ? "ok\n" : failures.joined(separator: "\n") + "\n"
        return Response(
            status: failures.isEmpty ? .ok : .serviceUnavailable,
            headers: [.contentType: "text/plain"],
            body: .init(byteBuffer: ByteBuffer(string: text))
        )
    }
}

package struct TimeoutError: Error, Sendable, CustomStringConvertible {
    package var description: String { "timed out" }
}

/// Runs `body`, failing with `TimeoutError` when it takes longer than `timeout`.
package func withTimeout<T: Sendable>(_ timeout: Duration, _ body: @escaping @Sendable () async throws -> T)
    async throws -> T
{
    try await withThrowingTaskGroup(of: T.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: timeout)
            throw TimeoutError()
        }
        defer { group.cancelAll() }
        guard let first = try await group.next() else { throw TimeoutError() }
        return first
    }
}
