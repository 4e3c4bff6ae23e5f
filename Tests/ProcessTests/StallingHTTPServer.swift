import MDMTestSupport
import NIOCore
import NIOHTTP1
import NIOPosix

/// An upstream (a DDM server, say) that answers every request `200 {}` only after `delay`, and
/// reports each request's arrival, so a test can hold a role's request in flight and act
/// while it is.
final class StallingHTTPServer: Sendable {
    let port: Int
    /// One element per request received (when its last byte arrived).
    let arrivals: AsyncStream<Void>
    private let channel: any Channel

    private init(port: Int, arrivals: AsyncStream<Void>, channel: any Channel) {
        self.port = port
        self.arrivals = arrivals
        self.channel = channel
    }

    static func start(delay: TimeAmount) async throws -> StallingHTTPServer {
        let (arrivals, continuation) = AsyncStream.makeStream(of: Void.self)
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(
                        StallingHandler(delay: delay, arrived: { continuation.yield() }))
                }
            }
            .bind(host: "127.0.0.1", port: 0)
            .get()
        guard let port = channel.localAddress?.port else { throw FreePortError.noAddress }
        return StallingHTTPServer(port: port, arrivals: arrivals, channel: channel)
    }

    func close() async {
        try? await channel.close()
    }
}

private final class StallingHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let delay: TimeAmount
    let arrived: @Sendable () -> Void

    init(delay: TimeAmount, arrived: @escaping @Sendable () -> Void) {
        self.delay = delay
        self.arrived = arrived
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .end = unwrapInboundIn(data) else { return }
        arrived()
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        context.eventLoop.scheduleTask(in: delay) {
            let context = bound.value
            var head = HTTPResponseHead(version: .http1_1, status: .ok)
            head.headers.add(name: "Content-Type", value: "application/json")
            head.headers.add(name: "Content-Length", value: "2")
            context.write(NIOAny(HTTPServerResponsePart.head(head)), promise: nil)
            context.write(NIOAny(HTTPServerResponsePart.body(.byteBuffer(ByteBuffer(string: "{}")))), promise: nil)
            context.writeAndFlush(NIOAny(HTTPServerResponsePart.end(nil)), promise: nil)
        }
    }
}
