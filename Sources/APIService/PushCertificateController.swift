import Hummingbird
import MDMServerSupport

/// `PUT /v1/pushcert` and `GET /v1/pushcert?topic=`.
struct PushCertificateController: Sendable {
    var handler: PushCertificateHandler
    var maxBodyBytes: Int

    func addRoutes<Context: RequestContext>(to group: RouterGroup<Context>) {
        group.put("pushcert") { request, _ in
            let body = try await request.body.collect(upTo: maxBodyBytes)
            let summary = try await handler.upload(pem: String(buffer: body))
            return JSONBody.response(summary, status: .ok)
        }
        group.get("pushcert") { request, _ in
            guard let topic = request.uri.queryParameters["topic"].map(String.init), !topic.isEmpty else {
                throw RequestFailure.badRequest("topic query parameter required")
            }
            return JSONBody.response(try await handler.fetch(topic: topic), status: .ok)
        }
    }
}
