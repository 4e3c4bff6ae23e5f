import AsyncHTTPClient
import Foundation
import Logging
import MDMProtocol
import MDMServerSupport
import NIOCore

/// Forwards DDM requests to the configured DDM server over HTTP.
struct DeclarativeManagementClient: DeclarativeManagementForwarding {
    var configuration: DeclarativeManagementConfiguration
    var httpClient: HTTPClient
    /// DDM documents are small; a larger upstream reply is treated as a failure.
    var maxReplyBytes = 16 * 1024 * 1024

    func forward(_ request: DeclarativeManagement, enrollment: EnrollmentIdentity) async throws -> CheckinReply {
        guard let url = URL(string: request.endpoint, relativeTo: configuration.baseURL)?.absoluteURL else {
            throw MDMProtocolError.missingKey("Endpoint")
        }
        let body = request.data ?? Data()
        var upstream = HTTPClientRequest(url: url.absoluteString)
        upstream.method = body.isEmpty ? .GET : .PUT
        if !body.isEmpty {
            upstream.body = .bytes(ByteBuffer(bytes: body))
            upstream.headers.add(name: "Content-Type", value: "application/json")
        }
        upstream.headers.add(name: "X-Enrollment-ID", value: enrollment.id)
        upstream.headers.add(name: "X-Enrollment-Type", value: enrollment.type.rawValue)
        if let parent = enrollment.parentID {
            upstream.headers.add(name: "X-Enrollment-ParentID", value: parent)
        }
        if let key = configuration.hmacKey {
            upstream.headers.add(name: "X-Hmac-Signature", value: HMACSignature.base64(key: key, body: body))
        }
        for header in configuration.headers {
            upstream.headers.add(name: header.name, value: header.value)
        }

        let response: HTTPClientResponse
        let reply: ByteBuffer
        do {
            response = try await httpClient.execute(upstream, timeout: .init(configuration.timeout))
            reply = try await response.body.collect(upTo: maxReplyBytes)
        } catch {
            throw CheckinError.declarativeManagementFailed("\(url.absoluteString): \(error)")
        }
        guard response.status == .ok else {
            throw CheckinError.declarativeManagementFailed("\(url.absoluteString) answered \(response.status.code)")
        }
        return .forwarded(
            body: Data(reply.readableBytesView), contentType: response.headers.first(name: "Content-Type"))
    }
}

/// A `GetToken` handler that asks an HTTP service: the raw check-in is POSTed, the reply body
/// is the token.
struct ForwardingTokenHandler: GetTokenHandler {
    var url: URL
    var httpClient: HTTPClient
    var timeout: Duration = .seconds(30)

    func tokenData(for checkin: CheckinRequest) async throws -> Data {
        var request = HTTPClientRequest(url: url.absoluteString)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/x-apple-aspen-mdm-checkin")
        request.headers.add(name: "X-Enrollment-ID", value: checkin.enrollment.id)
        request.body = .bytes(ByteBuffer(bytes: checkin.raw))
        do {
            let response = try await httpClient.execute(request, timeout: .init(timeout))
            let body = try await response.body.collect(upTo: 1024 * 1024)
            guard response.status == .ok else {
                throw CheckinError.tokenServiceFailed("\(url.absoluteString) answered \(response.status.code)")
            }
            return Data(body.readableBytesView)
        } catch let error as CheckinError {
            throw error
        } catch {
            throw CheckinError.tokenServiceFailed("\(url.absoluteString): \(error)")
        }
    }
}
