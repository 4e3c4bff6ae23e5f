import Foundation
import Hummingbird
import MDMProtocol
import MDMServerSupport
import NIOCore

/// `PUT|POST /v1/enqueue/{ids}` and `GET|POST /v1/push/{ids}`: NanoMDM-compatible enqueue and
/// push with per-ID results.
struct EnqueueController: Sendable {
    var handler: EnqueueHandler
    var maxBodyBytes: Int

    func addRoutes<Context: RequestContext>(to group: RouterGroup<Context>) {
        group.put("enqueue/:ids") { request, context in try await self.enqueue(request, context: context) }
        group.post("enqueue/:ids") { request, context in try await self.enqueue(request, context: context) }
        group.get("push/:ids") { request, context in try await self.push(request, context: context) }
        group.post("push/:ids") { request, context in try await self.push(request, context: context) }
    }

    func push(_ request: Request, context: some RequestContext) async throws -> Response {
        let ids = try Self.enrollmentIDs(context.parameters.get("ids") ?? "")
        let result = try await handler.push(
            ids, wait: !Self.flag(request.uri.queryParameters["async"].map(String.init)))
        return Self.response(result)
    }

    static func response(_ result: APIResult) -> Response {
        JSONBody.response(result, status: result.hasTargetErrors ? .init(code: 207, reasonPhrase: "Multi-Status") : .ok)
    }

    func enqueue(_ request: Request, context: some RequestContext) async throws -> Response {
        let ids = try Self.enrollmentIDs(context.parameters.get("ids") ?? "")
        let body = try await request.body.collect(upTo: maxBodyBytes)
        let query = request.uri.queryParameters
        let enqueueRequest = EnqueueRequest(
            enrollmentIDs: ids,
            body: Data(body.readableBytesView),
            noPush: Self.flag(query["nopush"].map(String.init)),
            priority: try Self.priority(query["priority"].map(String.init)),
            waitForPush: !Self.flag(query["async"].map(String.init))
        )
        do {
            return Self.response(try await handler.enqueue(enqueueRequest))
        } catch let error as MDMProtocolError {
            return JSONBody.response(APIResult(commandError: error.reason), status: error.status)
        } catch let error as HTTPMappableError where error.status == .conflict {
            return JSONBody.response(APIResult(commandError: error.reason), status: error.status)
        }
    }

    /// `a,b,c` with each ID percent-decoded; duplicates dropped, order kept.
    static func enrollmentIDs(_ raw: String) throws -> [String] {
        var seen = Set<String>()
        var ids: [String] = []
        for piece in raw.split(separator: ",") {
            let id = (piece.removingPercentEncoding ?? String(piece)).trimmingCharacters(in: .whitespaces)
            guard !id.isEmpty else { continue }
            if seen.insert(id).inserted { ids.append(id) }
        }
        guard !ids.isEmpty else { throw RequestFailure.badRequest("no enrollment IDs") }
        return ids
    }

    /// NanoMDM: any non-empty value except `0`/`false` turns the flag on.
    static func flag(_ value: String?) -> Bool {
        guard let value, !value.isEmpty else { return false }
        return !["0", "false"].contains(value.lowercased())
    }

    static func priority(_ value: String?) throws -> Int16 {
        guard let value, !value.isEmpty else { return 0 }
        guard let priority = Int16(value) else { throw RequestFailure.badRequest("priority must be -32768…32767") }
        return priority
    }
}
