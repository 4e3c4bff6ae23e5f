import Hummingbird
import MDMProtocol
import MDMServerSupport

/// `PUT|POST /mdm`: a report in, the next command's bytes (or an empty 200) out.
struct CommandController: Sendable {
    var handler: CommandHandler
    var extractor: DeviceIdentityExtractor
    var maxBodyBytes: Int

    func addRoutes<Context: RequestContext>(to router: Router<Context>) {
        router.addDeviceEndpoint("mdm") { request, context in try await self.report(request, context: context) }
    }

    func report(_ request: Request, context: some RequestContext) async throws -> Response {
        let device = try await DeviceRequest.read(request, limit: maxBodyBytes, extractor: extractor)
        let report = try CommandReport.decode(device.body)
        var logger = context.logger
        logger[metadataKey: LogKey.enrollmentID] = "\(report.enrollment.id)"
        logger[metadataKey: LogKey.status] = "\(report.status)"
        if let uuid = report.commandUUID { logger[metadataKey: LogKey.commandUUID] = "\(uuid)" }
        guard
            let next = try await handler.handle(
                report, identity: device.identity, urlParameters: device.queryParameters)
        else {
            logger.debug("report handled; queue empty")
            return .emptyOK
        }
        logger.debug("report handled; next command sent")
        return Response(status: .ok, headers: [.contentType: "application/xml"], body: .init(byteBuffer: next.plist))
    }
}
