import Foundation
import Hummingbird
import MDMServerSupport

/// NanoMDM-compatible API authentication: `Basic nanomdm:<key>` or `Bearer <key>`.
struct APIKeyMiddleware<Context: RequestContext>: RouterMiddleware {
    var apiKey: String

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response)
        async throws -> Response
    {
        guard let authorization = request.headers[.authorization], accepts(authorization) else {
            throw RequestFailure.unauthorized
        }
        return try await next(request, context)
    }

    func accepts(_ authorization: String) -> Bool {
        let parts = authorization.split(separator: " ", maxSplits: 1)
        guard parts.count == 2 else { return false }
        let scheme = parts[0].lowercased()
        let credentials = parts[1].trimmingCharacters(in: .whitespaces)
        switch scheme {
        case "bearer":
            return constantTimeEqual(Array(credentials.utf8), Array(apiKey.utf8))
        case "basic":
            guard let decoded = Data(base64Encoded: credentials) else { return false }
            return constantTimeEqual(Array(decoded), Array("nanomdm:\(apiKey)".utf8))
        default:
            return false
        }
    }

    /// Compares without an early exit so timing does not reveal how much of the key matched.
    private func constantTimeEqual(_ lhs: [UInt8], _ rhs: [UInt8]) -> Bool {
        var difference = UInt8(lhs.count == rhs.count ? 0 : 1)
        for index in 0..<max(lhs.count, rhs.count) {
            let left = index < lhs.count ? lhs[index] : 0
            let right = index < rhs.count ? rhs[index] : 0
            difference |= left ^ right
        }
        return difference == 0
    }
}
