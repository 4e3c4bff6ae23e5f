import Foundation
import Hummingbird
import MDMServerSupport

/// `GET /v1/webhook/events`, `GET /v1/webhook/events/{id}`, `POST /v1/webhook/events/retry`:
/// the webhook outbox for operators (dead letters first of all).
struct WebhookEventController: Sendable {
    var handler: WebhookEventHandler

    /// A retry request is a few IDs at most.
    static let maxRequestBytes = 1024 * 1024

    func addRoutes<Context: RequestContext>(to group: RouterGroup<Context>) {
        group.get("webhook/events") { request, _ in
            let query = request.uri.queryParameters
            let page = try await handler.list(
                state: query["state"].map(String.init),
                enrollmentID: query["enrollment_id"].map(String.init),
                after: query["after"].map(String.init),
                limit: query["limit"].map(String.init)
            )
            return JSONBody.response(page, status: .ok)
        }
        group.get("webhook/events/:id") { _, context in
            let body = try await handler.body(id: context.parameters.get("id") ?? "")
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: body))
        }
        group.post("webhook/events/retry") { request, _ in
            let body = try await request.body.collect(upTo: Self.maxRequestBytes)
            let retry: WebhookRetryRequest
            if body.readableBytes == 0 {
                retry = WebhookRetryRequest()
            } else {
                do {
                    retry = try JSONDecoder().decode(WebhookRetryRequest.self, from: Data(body.readableBytesView))
                } catch {
                    throw RequestFailure.badRequest(
                        "body must be JSON like {\"ids\":[1,2]} or {\"enrollment_id\":\"…\"}")
                }
            }
            return JSONBody.response(["retried": try await handler.retry(retry)], status: .ok)
        }
    }
}
