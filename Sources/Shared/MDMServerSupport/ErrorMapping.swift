import Foundation
import Hummingbird
import Logging
import MDMIdentity
import MDMProtocol
import MDMStorage
import NIOCore

/// An error that knows which HTTP status it means. The three kinds of STYLE.md: the client
/// sent something wrong (4xx), the client is not allowed (400 on device endpoints, 401 on the
/// API), our fault (5xx).
package protocol HTTPMappableError: Error {
    var status: HTTPResponse.Status { get }
    /// A sentence for logs and API error bodies; never holds secrets.
    var reason: String { get }
}

extension MDMProtocolError: HTTPMappableError {
    package var status: HTTPResponse.Status { .badRequest }
    package var reason: String {
        switch self {
        case .malformedPlist(let detail): "malformed property list: \(detail)"
        case .missingKey(let key): "missing or invalid key \(key)"
        case .unknownMessageType(let type): "unknown MessageType \(type)"
        case .missingEnrollmentID: "no UDID or EnrollmentID"
        case .unexpectedMessage(let detail): detail
        }
    }
}

extension DeviceIdentityError: HTTPMappableError {
    // Never 401: older OS versions unenroll on 401.
    package var status: HTTPResponse.Status { .badRequest }
    package var reason: String { "device identity refused: \(self)" }
}

extension StorageError: HTTPMappableError {
    package var status: HTTPResponse.Status {
        switch self {
        case .duplicateCommand: .conflict
        case .unknownDevice: .badRequest
        case .schemaOutdated: .serviceUnavailable
        case .pushKeyEncrypted, .pushKeyUndecryptable: .internalServerError
        }
    }

    package var reason: String {
        switch self {
        case .duplicateCommand(let uuid): "command \(uuid) already exists"
        case .unknownDevice(let id): "device \(id) has not authenticated"
        case .schemaOutdated(let current, let required):
            "database schema version \(current) is older than \(required); run `APIService migrate`"
        case .pushKeyEncrypted(let topic):
            "the private key of push topic \(topic) is encrypted and MDM_PUSH_KEY_ENCRYPTION_KEY is not set"
        case .pushKeyUndecryptable(let topic):
            "the private key of push topic \(topic) does not decrypt with MDM_PUSH_KEY_ENCRYPTION_KEY"
        }
    }
}

/// Request-level failures raised by controllers and handlers.
package enum RequestFailure: HTTPMappableError, Equatable {
    case badRequest(String)
    case unauthorized
    case notFound(String)

    package var status: HTTPResponse.Status {
        switch self {
        case .badRequest: .badRequest
        case .unauthorized: .unauthorized
        case .notFound: .notFound
        }
    }

    package var reason: String {
        switch self {
        case .badRequest(let detail), .notFound(let detail): detail
        case .unauthorized: "missing or invalid API key"
        }
    }
}

/// The one place errors become HTTP statuses.
package enum ErrorClassifier {
    package static func classify(_ error: any Error) -> (status: HTTPResponse.Status, reason: String) {
        switch error {
        case let mappable as any HTTPMappableError:
            return (mappable.status, mappable.reason)
        case let response as any HTTPResponseError:
            return (response.status, "\(response.status.reasonPhrase)")
        default:
            return (.internalServerError, "internal error")
        }
    }

    /// Logs an error once, at the edge: client mistakes at notice, our faults at error.
    static func log(_ error: any Error, status: HTTPResponse.Status, reason: String, request: Request, logger: Logger) {
        var metadata: Logger.Metadata = [
            "http.status": "\(status.code)",
            "http.path": "\(request.uri.path)",
        ]
        if status.kind == .serverError {
            metadata["error"] = "\(String(reflecting: error))"
            logger.error("request failed: \(reason)", metadata: metadata)
        } else {
            logger.notice("request refused: \(reason)", metadata: metadata)
        }
    }
}

/// The one error middleware: every thrown error is classified, logged once and rendered the
/// way the endpoint's clients expect.
package struct ErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    package enum Audience: Sendable {
        /// Devices: a bare status and an empty body; never 401 (older OS versions unenrol on 401).
        case device
        /// API clients: `{"error": "<reason>"}`; 401 carries NanoMDM's Basic challenge.
        case api
    }

    package var audience: Audience

    package init(_ audience: Audience) {
        self.audience = audience
    }

    package func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response)
        async throws -> Response
    {
        do {
            return try await next(request, context)
        } catch {
            var (status, reason) = ErrorClassifier.classify(error)
            if audience == .device, status == .unauthorized { status = .badRequest }
            ErrorClassifier.log(error, status: status, reason: reason, request: request, logger: context.logger)
            switch audience {
            case .device:
                return Response(status: status)
            case .api:
                var headers = HTTPFields()
                if status == .unauthorized {
                    headers[.wwwAuthenticate] = "Basic realm=\"nanomdm\""
                }
                return JSONBody.response(["error": reason], status: status, headers: headers)
            }
        }
    }
}

extension Router {
    /// A device endpoint: `PUT` and `POST` on `path` (devices use PUT; POST is accepted), with
    /// device error rendering.
    package func addDeviceEndpoint(
        _ path: RouterPath,
        handler: @escaping @Sendable (Request, Context) async throws -> Response
    ) {
        let group = self.group(path).add(middleware: ErrorMiddleware<Context>(.device))
        group.put { request, context in try await handler(request, context) }
        group.post { request, context in try await handler(request, context) }
    }
}

/// Small JSON helpers shared by API responses.
package enum JSONBody {
    package static func encode(_ value: some Encodable) -> ByteBuffer {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let data = (try? encoder.encode(value)) ?? Data("{}".utf8)
        return ByteBuffer(bytes: data)
    }

    /// A JSON response with `value` as its body.
    package static func response(
        _ value: some Encodable,
        status: HTTPResponse.Status,
        headers extra: HTTPFields = [:]
    ) -> Response {
        var headers = extra
        headers[.contentType] = "application/json"
        return Response(status: status, headers: headers, body: .init(byteBuffer: encode(value)))
    }
}
