import HTTPTypes
import Hummingbird
import NIOCore

/// Counts and times every request by route pattern, method and status
/// (`mdm_http_requests_total`, `mdm_http_request_duration_seconds`).
package struct RequestMetricsMiddleware<Context: RequestContext>: RouterMiddleware {
    package var metrics: MDMMetrics

    package init(metrics: MDMMetrics) {
        self.metrics = metrics
    }

    package func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response)
        async throws -> Response
    {
        let start = ContinuousClock.now
        do {
            let response = try await next(request, context)
            record(request, context: context, status: Int(response.status.code), start: start)
            return response
        } catch {
            let status = (error as? any HTTPResponseError)?.status ?? .internalServerError
            record(request, context: context, status: Int(status.code), start: start)
            throw error
        }
    }

    /// Clients can send any token as a method; unusual ones share one label so they cannot
    /// mint series.
    static func methodLabel(_ method: HTTPRequest.Method) -> String {
        switch method {
        case .get, .head, .put, .post, .delete, .patch, .options: method.rawValue
        default: "other"
        }
    }

    private func record(_ request: Request, context: Context, status: Int, start: ContinuousClock.Instant) {
        // The router has matched the route by the time middleware runs; unmatched requests are
        // labelled "NotFound" by Hummingbird. Never the raw path: it carries IDs.
        metrics.recordRequest(
            route: context.endpointPath ?? "unmatched",
            method: Self.methodLabel(request.method),
            status: status,
            duration: ContinuousClock.now - start
        )
    }
}

/// `GET /metrics`: the Prometheus text exposition of the role's registry.
package struct MetricsController: Sendable {
    package var metrics: MDMMetrics

    package init(metrics: MDMMetrics) {
        self.metrics = metrics
    }

    package func addRoutes<Context: RequestContext>(to router: Router<Context>) {
        router.get("metrics") { _, _ in
            Response(
                status: .ok,
                headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(bytes: metrics.exposition()))
            )
        }
    }
}
