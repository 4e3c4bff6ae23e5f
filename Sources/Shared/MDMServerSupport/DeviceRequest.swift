import Foundation
import Hummingbird
import MDMIdentity
import NIOCore

/// A device request's body, read once under the configured limit, with its verified identity.
package struct DeviceRequest: Sendable {
    package var body: Data
    package var identity: DeviceIdentity
    /// The URL's query, first value per name (the webhook's `url_params`).
    package var queryParameters: [String: String]

    /// Reads the body (413 over `limit`) and verifies the identity (400 when refused).
    package static func read(_ request: Request, limit: Int, extractor: DeviceIdentityExtractor) async throws
        -> DeviceRequest
    {
        let buffer = try await request.body.collect(upTo: limit)
        let bytes = Array(buffer.readableBytesView)
        let identity = try await extractor.identify(headers: request.headers, body: bytes)
        var query: [String: String] = [:]
        for (name, value) in request.uri.queryParameters where query[String(name)] == nil {
            query[String(name)] = String(value)
        }
        return DeviceRequest(body: Data(bytes), identity: identity, queryParameters: query)
    }
}

extension Response {
    /// 200 with an XML property list body.
    package static func plist(_ data: Data) -> Response {
        Response(
            status: .ok,
            headers: [.contentType: "application/xml"],
            body: .init(byteBuffer: ByteBuffer(bytes: data))
        )
    }

    /// 200 with an empty body: what devices expect when there is nothing to say.
    package static var emptyOK: Response { Response(status: .ok) }
}
