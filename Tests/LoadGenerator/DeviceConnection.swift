import Foundation
import MDMTestSupport
import NIOCore
import NIOHTTP1
import NIOPosix

/// One keep-alive HTTP/1.1 connection of one simulated device to CommandService, as a device
/// holds it: a request, its reply, the next request. Leaner than a pooled general-purpose
/// client, so that the generator leaves the machine's cores to the server it measures.
struct DeviceConnection: Sendable {
    private let channel: any Channel
    private let replies: NIOLoopBound<ReplyCollector>
    private let host: String
    private let path: String

    /// `url`: `http://host:port/path` (the generator speaks plain HTTP, as on the local stack).
    static func connect(to url: String, on eventLoop: any EventLoop) async throws -> DeviceConnection {
        guard let parsed = URL(string: url), parsed.scheme == "http", let host = parsed.host else {
            throw LoadError.failed("\(url): the load generator's device connections speak plain http only")
        }
        let port = parsed.port ?? 80
        let channel = try await ClientBootstrap(group: eventLoop)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(ReplyCollector())
                }
            }
            .connect(host: host, port: port)
            .get()
        let replies = try await channel.eventLoop.submit {
            NIOLoopBound(
                try channel.pipeline.syncOperations.handler(type: ReplyCollector.self), eventLoop: channel.eventLoop)
        }.get()
        return DeviceConnection(
            channel: channel,
            replies: replies,
            host: "\(host):\(port)",
            path: parsed.path.isEmpty ? "/" : parsed.path
        )
    }

    /// PUTs a signed report and returns the status and the body of the reply.
    func send(_ report: SignedReport) async throws -> (status: Int, body: ByteBuffer) {
        let promise = channel.eventLoop.makePromise(of: (status: Int, body: ByteBuffer).self)
        var head = HTTPRequestHead(version: .http1_1, method: .PUT, uri: path)
        head.headers.add(name: "Host", value: host)
        head.headers.add(name: "Content-Type", value: "application/x-apple-aspen-mdm")
        head.headers.add(name: "Content-Length", value: String(report.body.count))
        head.headers.add(name: report.identityHeader.name, value: report.identityHeader.value)
        let body = ByteBuffer(bytes: report.body)
        let request = head
        let channel = self.channel
        let replies = self.replies
        channel.eventLoop.execute {
            replies.value.waiting.append(promise)
            channel.write(HTTPClientRequestPart.head(request), promise: nil)
            channel.write(HTTPClientRequestPart.body(.byteBuffer(body)), promise: nil)
            channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
        }
        return try await promise.futureResult.get()
    }

    func close() async {
        try? await channel.close()
    }
}

/// Collects each reply and completes the oldest waiting request with it.
private final class ReplyCollector: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart

    var waiting = CircularBuffer<EventLoopPromise<(status: Int, body: ByteBuffer)>>()
    private var status = 0
    private var body = ByteBuffer()

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            status = Int(head.status.code)
            body.clear()
        case .body(var part):
            body.writeBuffer(&part)
        case .end:
            guard let promise = waiting.popFirst() else {
                context.fireErrorCaught(LoadError.failed("a reply nobody asked for"))
                return
            }
            promise.succeed((status, body))
            body = ByteBuffer()
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        failAll(error)
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        failAll(LoadError.failed("the server closed the connection"))
        context.fireChannelInactive()
    }

    private func failAll(_ error: any Error) {
        while let promise = waiting.popFirst() { promise.fail(error) }
    }
}
