import AsyncHTTPClient
import Foundation
import MDMServerSupport
import NIOCore
import NIOHTTP1

/// What one POST to the receiver came to.
package enum WebhookPostOutcome: Sendable, Equatable {
    case delivered
    /// Why the attempt failed, fit for `last_error` (never the URL, which may hold credentials).
    case failed(String)
}

/// POSTs event bodies to the receiver.
package struct WebhookClient: Sendable {
    package var url: URL
    package var hmacKey: [UInt8]?
    package var timeout: Duration
    package var httpClient: HTTPClient
    /// Receivers answer with a short acknowledgement; more than this is read and discarded.
    static let maxReplyBytes = 64 * 1024

    package init(url: URL, hmacKey: [UInt8]?, timeout: Duration, httpClient: HTTPClient) {
        self.url = url
        self.hmacKey = hmacKey
        self.timeout = timeout
        self.httpClient = httpClient
    }

    /// Any 2xx is a delivery; anything else, a transport error or the timeout is a failure.
    package func post(_ body: ByteBuffer) async -> WebhookPostOutcome {
        var request = HTTPClientRequest(url: url.absoluteString)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json; charset=utf-8")
        if let hmacKey {
            request.headers.add(
                name: "X-Hmac-Signature", value: HMACSignature.base64(key: hmacKey, body: body.readableBytesView))
        }
        request.body = .bytes(body)
        do {
            let response = try await httpClient.execute(request, deadline: .now() + .init(timeout))
            // Read the reply to its end (bounded) so the connection can be reused.
            var discarded = 0
            for try await part in response.body {
                discarded += part.readableBytes
                if discarded > Self.maxReplyBytes { break }
            }
            guard (200..<300).contains(response.status.code) else {
                return .failed("receiver answered \(response.status.code)")
            }
            return .delivered
        } catch let error as HTTPClientError {
            return .failed("HTTP: \(error)")
        } catch {
            return .failed("\(type(of: error)): \(error)")
        }
    }
}
