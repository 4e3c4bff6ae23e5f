import Foundation
import Glibc
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// Why the webhook receiver could not do what a test asked.
package enum WebhookReceiverError: Error, Sendable, Equatable {
    case noLocalPort
    case timedOut(expected: Int, received: Int)
}

/// A webhook receiver for tests: plain HTTP/1.1 on 127.0.0.1 that records every request and
/// answers as the test scripts it (accept, fail, drop the connection, never answer), and can
/// go down (connection refused) and come back up on the same port.
package final class WebhookReceiver: Sendable {
    /// How the receiver answers the next requests.
    package enum Mode: Sendable, Equatable {
        /// 200, after `delay` (to widen windows in concurrency tests).
        case accept(delay: Duration = .zero)
        /// This status, with an empty body.
        case fail(status: Int)
        /// Closes the connection without answering.
        case dropConnection
        /// Never answers; the request stays open until the client gives up.
        case hold
        /// `status` for bodies containing `marker`, 200 for the others.
        case failBodies(containing: String, status: Int)
    }

    /// One request as it arrived.
    package struct Received: Sendable {
        package let body: [UInt8]
        /// Header names lowercased, in arrival order.
        package let headers: [(name: String, value: String)]
        package let receivedAt: ContinuousClock.Instant
        /// When the 200 went out; `nil` for requests not accepted.
        package let acceptedAt: ContinuousClock.Instant?

        package func header(_ name: String) -> String? {
            let name = name.lowercased()
            return headers.first { $0.name == name }?.value
        }
    }

    package let port: Int
    private let state: Mutex<State>
    private let received = AwaitableLog<Received> { WebhookReceiverError.timedOut(expected: $0, received: $1) }
    private let acceptedLog = AwaitableLog<Received> { WebhookReceiverError.timedOut(expected: $0, received: $1) }

    package var url: String { "http://127.0.0.1:\(port)/webhook" }

    private init(port: Int, channel: any Channel) {
        self.port = port
        self.state = Mutex(State(serverChannel: channel))
    }

    /// Starts accepting on an ephemeral port of 127.0.0.1.
    package static func start(mode: Mode = .accept()) async throws -> WebhookReceiver {
        let box = ReceiverBox()
        let channel = try await bind(port: 0, box: box)
        guard let port = channel.localAddress?.port else {
            try await channel.close()
            throw WebhookReceiverError.noLocalPort
        }
        let receiver = WebhookReceiver(port: port, channel: channel)
        receiver.state.withLock { $0.mode = mode }
        box.receiver.withLock { $0 = receiver }
        return receiver
    }

    private static func bind(port: Int, box: ReceiverBox) async throws -> any Channel {
        try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelOption(ChannelOptions.socketOption(.init(rawValue: SO_REUSEPORT)), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    box.receiver.withLock { $0 }?.track(channel)
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(ReceiverHandler(box: box))
                }
            }
            .bind(host: "127.0.0.1", port: port)
            .get()
    }

    package func setMode(_ mode: Mode) {
        state.withLock { $0.mode = mode }
    }

    /// Goes down: stops listening and closes every connection, so clients get "connection refused".
    /// The port stays reserved by a bound socket that does not listen, so nothing else on the
    /// machine (another test's server or an outgoing connection) can take it meanwhile.
    package func stopListening() async throws {
        try await goDown(holdingPort: true)
    }

    /// Comes back up on the same port.
    package func startListening() async throws {
        let box = ReceiverBox()
        box.receiver.withLock { $0 = self }
        let channel = try await Self.bind(port: port, box: box)
        let holder = state.withLock { state in
            state.serverChannel = channel
            defer { state.portHolder = nil }
            return state.portHolder
        }
        holder?.close()
    }

    package func shutdown() async throws {
        try await goDown(holdingPort: false)
    }

    private func goDown(holdingPort: Bool) async throws {
        let holder = holdingPort ? try PortHolder(port: port) : nil
        let (server, connections, previous) = state.withLock { state in
            defer {
                state.serverChannel = nil
                state.portHolder = holder
            }
            return (state.serverChannel, Array(state.connections.values), state.portHolder)
        }
        previous?.close()
        try await server?.close()
        for connection in connections {
            try? await connection.close()
        }
    }

    /// Every request so far, in arrival order.
    package func requests() -> [Received] {
        received.items
    }

    /// The requests answered 200, in the order they were answered.
    package func accepted() -> [Received] {
        acceptedLog.items
    }

    /// Waits until at least `count` requests have arrived.
    package func waitForRequests(count: Int, timeout: Duration = .seconds(30)) async throws -> [Received] {
        try await received.wait(count: count, timeout: timeout)
    }

    /// Waits until at least `count` requests have been answered 200.
    package func waitForAccepted(count: Int, timeout: Duration = .seconds(30)) async throws -> [Received] {
        try await acceptedLog.wait(count: count, timeout: timeout)
    }

    /// Records a request and returns how to answer it.
    fileprivate func receive(body: [UInt8], headers: [(name: String, value: String)]) -> Mode {
        received.append(Received(body: body, headers: headers, receivedAt: .now, acceptedAt: nil))
        return state.withLock { $0.mode }
    }

    /// Records that a request was answered 200.
    fileprivate func recordAccepted(
        body: [UInt8], headers: [(name: String, value: String)], receivedAt: ContinuousClock.Instant
    ) {
        acceptedLog.append(Received(body: body, headers: headers, receivedAt: receivedAt, acceptedAt: .now))
    }

    fileprivate func track(_ channel: any Channel) {
        state.withLock { $0.connections[ObjectIdentifier(channel)] = channel }
        channel.closeFuture.whenComplete { [weak self] _ in
            _ = self?.state.withLock { $0.connections.removeValue(forKey: ObjectIdentifier(channel)) }
        }
    }
}

/// Lets connections reach the receiver, which exists only once the socket is bound.
private final class ReceiverBox: Sendable {
    let receiver = Mutex<WebhookReceiver?>(nil)
}

private struct State {
    var serverChannel: (any Channel)?
    var portHolder: PortHolder?
    var mode: WebhookReceiver.Mode = .accept()
    var connections: [ObjectIdentifier: any Channel] = [:]
}

/// Answers one connection's requests as the receiver's mode says.
private final class ReceiverHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let box: ReceiverBox
    private var head: HTTPRequestHead?
    private var body: [UInt8] = []

    init(box: ReceiverBox) {
        self.box = box
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            body = []
        case .body(var buffer):
            body += buffer.readBytes(length: buffer.readableBytes) ?? []
        case .end:
            guard let head, let receiver = box.receiver.withLock({ $0 }) else {
                context.close(promise: nil)
                return
            }
            let headers = head.headers.map { (name: $0.name.lowercased(), value: $0.value) }
            let receivedAt = ContinuousClock.now
            let body = self.body
            var mode = receiver.receive(body: body, headers: headers)
            if case .failBodies(let marker, let status) = mode {
                let contains = String(decoding: body, as: UTF8.self).contains(marker)
                mode = contains ? .fail(status: status) : .accept()
            }
            switch mode {
            case .accept(let delay):
                let accept = {
                    receiver.recordAccepted(body: body, headers: headers, receivedAt: receivedAt)
                    self.respond(context: context, status: .ok, keepAlive: head.isKeepAlive)
                }
                if delay == .zero {
                    accept()
                } else {
                    context.eventLoop.assumeIsolated().scheduleTask(in: .init(delay)) { accept() }
                }
            case .fail(let status):
                respond(context: context, status: HTTPResponseStatus(statusCode: status), keepAlive: head.isKeepAlive)
            case .dropConnection:
                context.close(promise: nil)
            case .hold, .failBodies:
                break
            }
        }
    }

    private func respond(context: ChannelHandlerContext, status: HTTPResponseStatus, keepAlive: Bool) {
        var headers = HTTPHeaders()
        headers.add(name: "content-length", value: "0")
        if !keepAlive { headers.add(name: "connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))))
            .whenFailure { _ in }
        let written = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if !keepAlive {
            let channel = context.channel
            written.whenComplete { _ in channel.close(promise: nil) }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

/// A TCP socket bound to 127.0.0.1:`port` that never listens: connections to the port are
/// refused, yet the port cannot be handed to anyone else. Shares the port with the receiver's
/// listener through SO_REUSEPORT.
private final class PortHolder: Sendable {
    private let descriptor: Mutex<Int32?>

    init(port: Int) throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw IOError(errnoCode: errno, reason: "socket") }
        var one: Int32 = 1
        let size = socklen_t(MemoryLayout<Int32>.size)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let shared =
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, size) == 0
            && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, size) == 0
        let bound =
            shared
            && withUnsafePointer(to: &address) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
                }
            }
        guard bound else {
            let code = errno
            _ = Glibc.close(fd)
            throw IOError(errnoCode: code, reason: "bind 127.0.0.1:\(port)")
        }
        descriptor = Mutex(fd)
    }

    func close() {
        descriptor.withLock { fd in
            if let open = fd { _ = Glibc.close(open) }
            fd = nil
        }
    }

    deinit { close() }
}
