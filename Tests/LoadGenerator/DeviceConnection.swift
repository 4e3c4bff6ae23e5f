import Foundation
import MDMTestSupport
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix

/// The keep-alive HTTP/1.1 connection of one simulated device to CommandService, as a device
/// holds it: a request, its reply, the next request; a new connection when the server (or a
/// proxy's `keepalive_requests`) ends the old one. Leaner than a pooled general-purpose client,
/// so that the generator leaves the machine's cores to the server it measures.
final class DeviceConnection: Sendable {
    typealias Reply = (status: Int, body: ByteBuffer)

    private struct Open: Sendable {
        var channel: any Channel
        var replies: NIOLoopBound<ReplyCollector>
    }

    private let host: String
    private let port: Int
    /// The `Host` header, `host:port`.
    private let authority: String
    private let path: String
    private let eventLoop: any EventLoop
    private let open = NIOLockedValueBox<Open?>(nil)

    /// `url`: `http://host:port/path` (the generator speaks plain HTTP, as on the local stack).
    init(url: String, eventLoop: any EventLoop) throws {
        guard let parsed = URL(string: url), parsed.scheme == "http", let host = parsed.host else {
            throw LoadError.failed("\(url): the load generator's device connections speak plain http only")
        }
        self.host = host
        self.port = parsed.port ?? 80
        self.authority = "\(host):\(port)"
        self.path = parsed.path.isEmpty ? "/" : parsed.path
        self.eventLoop = eventLoop
    }

    /// PUTs a signed report and returns the status and the body of the reply.
    func send(_ report: SignedReport) async throws -> Reply {
        let connection = try await current()
        let promise = eventLoop.makePromise(of: Reply.self)
        var head = HTTPRequestHead(version: .http1_1, method: .PUT, uri: path)
        head.headers.add(name: "Host", value: authority)
        head.headers.add(name: "Content-Type", value: "application/x-apple-aspen-mdm")
        head.headers.add(name: "Content-Length", value: String(report.body.count))
        head.headers.add(name: report.identityHeader.name, value: report.identityHeader.value)
        let request = head
        let body = ByteBuffer(bytes: report.body)
        eventLoop.execute {
            let channel = connection.channel
            guard channel.isActive else {
                promise.fail(LoadError.failed("the connection closed before the request was sent"))
                return
            }
            connection.replies.value.waiting.append(promise)
            channel.write(HTTPClientRequestPart.head(request), promise: nil)
            channel.write(HTTPClientRequestPart.body(.byteBuffer(body)), promise: nil)
            channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
        }
        return try await promise.futureResult.get()
    }

    func close() async {
        let channel = open.withLockedValue { open in
            defer { open = nil }
            return open?.channel
        }
        try? await channel?.close()
    }

    /// The open connection, or a new one when there is none or the server closed it.
    private func current() async throws -> Open {
        if let existing = open.withLockedValue({ $0 }), existing.channel.isActive {
            return existing
        }
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
        let fresh = Open(channel: channel, replies: replies)
        open.withLockedValue { $0 = fresh }
        return fresh
    }
}

/// Collects each reply and completes the oldest waiting request with it. A reply that ends
/// the connection (`Connection: close`) closes the channel before the request completes, so
/// the device's next request opens a new one.
private final class ReplyCollector: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart

    var waiting = CircularBuffer<EventLoopPromise<DeviceConnection.Reply>>()
    private var status = 0
    private var keepAlive = true
    private var body = ByteBuffer()

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            status = Int(head.status.code)
            keepAlive = head.isKeepAlive
            body.clear()
        case .body(var part):
            body.writeBuffer(&part)
        case .end:
            guard let promise = waiting.popFirst() else {
                context.fireErrorCaught(LoadError.failed("a reply nobody asked for"))
                return
            }
            if !keepAlive { context.close(promise: nil) }
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
