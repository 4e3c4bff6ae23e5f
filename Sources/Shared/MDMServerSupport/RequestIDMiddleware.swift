import HTTPTypes
import Hummingbird
import Logging

/// Request IDs: the caller's `X-Request-ID` when it is a sane token (a proxy or client already
/// named the request), else a new one.
package enum RequestID {
    /// `X-Request-ID` (optional only because the initializer validates the name).
    package static let header = HTTPField.Name("X-Request-ID")
    /// Longer IDs are replaced: the value lands in every log line of the request.
    package static let maximumLength = 128

    /// The caller's ID when it is 1…128 characters of letters, digits and `-_.:/+=@`.
    package static func accepted(_ value: String) -> String? {
        guard !value.isEmpty, value.utf8.count <= maximumLength else { return nil }
        let allowed = value.utf8.allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"):
                true
            case UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: ":"), UInt8(ascii: "/"),
                UInt8(ascii: "+"), UInt8(ascii: "="), UInt8(ascii: "@"):
                true
            default:
                false
            }
        }
        return allowed ? value : nil
    }

    /// 128 random bits as 32 hex digits.
    package static func generate() -> String {
        var generator = SystemRandomNumberGenerator()
        return hex(generator.next()) + hex(generator.next())
    }

    private static func hex(_ value: UInt64) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }
}

/// Gives every request an ID that follows it through the logs: in the request's logger
/// (`mdm.request_id`) and back in the `X-Request-ID` response header.
package struct RequestIDMiddleware<Context: RequestContext>: RouterMiddleware {
    package init() {}

    package func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response)
        async throws -> Response
    {
        guard let header = RequestID.header else { return try await next(request, context) }
        let id = request.headers[header].flatMap(RequestID.accepted) ?? RequestID.generate()
        var context = context
        context.logger[metadataKey: LogKey.requestID] = .string(id)
        var response: Response
        do {
            response = try await next(request, context)
        } catch let error as any HTTPResponseError {
            // Errors that no role middleware rendered (unknown paths and methods) still carry
            // the ID.
            response = try error.response(from: request, context: context)
        }
        response.headers[header] = id
        return response
    }
}
