import Hummingbird
import MDMProtocol
import MDMServerSupport
import NIOCore

/// `PUT|POST /checkin`: HTTP in, `CheckinHandler` rules, HTTP out.
struct CheckinController: Sendable {
    var handler: CheckinHandler
    var extractor: DeviceIdentityExtractor
    var maxBodyBytes: Int

    func addRoutes<Context: RequestContext>(to router: Router<Context>) {
        router.addDeviceEndpoint("checkin") { request, context in try await self.checkin(request, context: context) }
    }

    func checkin(_ request: Request, context: some RequestContext) async throws -> Response {
        let device = try await DeviceRequest.read(request, limit: maxBodyBytes, extractor: extractor)
        let checkin = try CheckinRequest.decode(device.body)
        var logger = context.logger
        logger[metadataKey: LogKey.enrollmentID] = "\(checkin.enrollment.id)"
        logger[metadataKey: LogKey.messageType] = "\(checkin.messageType)"
        let reply = try await handler.handle(
            checkin, identity: device.identity, urlParameters: device.queryParameters)
        logger.debug("check-in handled")
        switch reply {
        case .empty:
            return .emptyOK
        case .plist(let data):
            return .plist(data)
        case .declined:
            return Response(status: .gone)
        case .forwarded(let body, let contentType):
            var headers = HTTPFields()
            if let contentType { headers[.contentType] = contentType }
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: body)))
        }
    }
}
