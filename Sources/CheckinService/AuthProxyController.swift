import AsyncHTTPClient
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import MDMServerSupport
import MDMStorage
import NIOCore
import NIOHTTP1

/// `/authproxy/…`: forwards requests of devices whose identity certificate is bound to an
/// enrollment to `upstream`, naming the device channel in `X-Enrollment-ID` (DDM asset
/// downloads use it). Other requests are refused with 400 and never reach the upstream.
struct AuthProxyController: Sendable {
    var upstream: URL
    var store: any EnrollmentStore
    var extractor: DeviceIdentityExtractor
    var httpClient: HTTPClient
    var maxBodyBytes: Int
    var timeout: Duration = .seconds(60)

    static let prefix = "/authproxy"
    static let enrollmentIDHeader = "X-Enrollment-ID"

    func addRoutes<Context: RequestContext>(to router: Router<Context>) {
        let group = router.group("authproxy").add(middleware: ErrorMiddleware<Context>(.device))
        for method in [HTTPRequest.Method.get, .head, .post, .put, .patch, .delete] {
            group.on("**", method: method) { request, context in try await self.forward(request, context: context) }
        }
    }

    func forward(_ request: Request, context: some RequestContext) async throws -> Response {
        let device = try await DeviceRequest.read(request, limit: maxBodyBytes, extractor: extractor)
        guard let enrollmentID = try await store.fetchBoundDevice(certificateHash: device.identity.sha256) else {
            throw RequestFailure.badRequest("the identity certificate is not bound to an enrollment")
        }
        var outbound = HTTPClientRequest(
            url: Self.upstreamURL(upstream, path: request.uri.path, query: request.uri.query))
        outbound.method = HTTPMethod(rawValue: request.method.rawValue)
        for field in request.headers
        where !Self.isWithheld(field.name, certificateHeader: extractor.configuration.certificateHeader) {
            outbound.headers.add(name: field.name.rawName, value: field.value)
        }
        outbound.headers.replaceOrAdd(name: Self.enrollmentIDHeader, value: enrollmentID)
        if !device.body.isEmpty { outbound.body = HTTPClientRequest.Body.bytes(ByteBuffer(bytes: device.body)) }

        let response: HTTPClientResponse
        do {
            response = try await httpClient.execute(outbound, timeout: .init(timeout))
        } catch {
            context.logger.warning("auth proxy upstream failed", metadata: ["error": "\(error)"])
            return Response(status: .badGateway)
        }
        var headers = HTTPFields()
        for (name, value) in response.headers {
            guard let field = HTTPField.Name(name), !Self.hopByHop.contains(field.canonicalName) else { continue }
            headers.append(HTTPField(name: field, value: value))
        }
        return Response(
            status: HTTPResponse.Status(code: Int(response.status.code), reasonPhrase: response.status.reasonPhrase),
            headers: headers,
            body: ResponseBody(asyncSequence: response.body)
        )
    }

    /// `upstream` + the path after `/authproxy` + the query.
    static func upstreamURL(_ upstream: URL, path requestPath: String, query: String?) -> String {
        let base =
            upstream.absoluteString.hasSuffix("/")
            ? String(upstream.absoluteString.dropLast()) : upstream.absoluteString
        let path = requestPath.hasPrefix(prefix) ? String(requestPath.dropFirst(prefix.count)) : requestPath
        return base + (path.isEmpty ? "/" : path) + (query.map { "?" + $0 } ?? "")
    }

    static let hopByHop: Set<String> = [
        "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
        "transfer-encoding", "upgrade", "host", "content-length",
    ]

    /// Hop-by-hop headers, and the device's proof of identity: the upstream trusts our
    /// `X-Enrollment-ID` instead, which a client cannot set (it is replaced).
    static func isWithheld(_ name: HTTPField.Name, certificateHeader: String) -> Bool {
        let lowercased = name.canonicalName
        return hopByHop.contains(lowercased) || lowercased == "mdm-signature"
            || lowercased == certificateHeader.lowercased()
    }
}
