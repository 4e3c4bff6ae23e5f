import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOHTTP2
import NIOSSL
import X509

/// Answers one HTTP/2 stream, seen through the HTTP/1 codec.
final class MockAPNsStreamHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let recorder: Recorder
    private let logger: Logger
    private var head: HTTPRequestHead?
    private var body: [UInt8] = []

    init(recorder: Recorder, logger: Logger) {
        self.recorder = recorder
        self.logger = logger
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
        case .body(var buffer):
            body += buffer.readBytes(length: buffer.readableBytes) ?? []
        case .end:
            guard let head, let mock = recorder.mock.withLock({ $0 }) else {
                context.close(promise: nil)
                return
            }
            let request = MockAPNs.Recorded(
                method: head.method.rawValue,
                path: head.uri,
                headers: head.headers.map { (name: $0.name.lowercased(), value: $0.value) },
                body: body,
                clientCertificateSubject: clientCertificateSubject(context: context)
            )
            switch mock.receive(request) {
            case .reply(let status, let body):
                reply(context: context, status: status, body: body, apnsID: request.header("apns-id"))
            case .goAway:
                goAway(context: context)
            case .hold(let token):
                let handler = NIOLoopBound((self, context), eventLoop: context.eventLoop)
                let apnsID = request.header("apns-id")
                mock.hold(token) {
                    handler.eventLoop.execute {
                        let (handler, context) = handler.value
                        handler.reply(context: context, status: .ok, body: nil, apnsID: apnsID)
                    }
                }
            }
        }
    }

    private func clientCertificateSubject(context: ChannelHandlerContext) -> String {
        guard
            let parent = context.channel.parent,
            let peer = try? parent.pipeline.syncOperations.nioSSL_peerCertificate(),
            let certificate = try? Certificate(derEncoded: peer.toDERBytes())
        else {
            return ""
        }
        return certificate.subject.description
    }

    private func reply(context: ChannelHandlerContext, status: HTTPResponseStatus, body: String?, apnsID: String?) {
        var headers = HTTPHeaders()
        headers.add(name: "apns-id", value: apnsID ?? UUID().uuidString)
        var buffer: ByteBuffer?
        if let body {
            headers.add(name: "content-type", value: "application/json")
            headers.add(name: "content-length", value: String(body.utf8.count))
            buffer = context.channel.allocator.buffer(string: body)
        } else {
            headers.add(name: "content-length", value: "0")
        }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http2, status: status, headers: headers))))
            .whenFailure { [logger] in logger.debug("mock APNs could not answer: \($0)") }
        if let buffer {
            context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        }
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    }

    private func goAway(context: ChannelHandlerContext) {
        guard let parent = context.channel.parent else {
            context.close(promise: nil)
            return
        }
        let streamID = (try? context.channel.syncOptions?.getOption(HTTP2StreamChannelOptions.streamID)) ?? .maxID
        // The stream's own ID as the last one: the client cannot assume it went unprocessed, so it must fail
        // it rather than retry it on the same connection.
        let frame = HTTP2Frame(
            streamID: .rootStream,
            payload: .goAway(lastStreamID: streamID, errorCode: .internalError, opaqueData: nil)
        )
        parent.writeAndFlush(frame).whenComplete { _ in
            parent.close(promise: nil)
        }
    }
}

/// Keeps a failed handshake or a protocol error on one connection out of the test's way.
final class MockAPNsConnectionErrorHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = Never

    private let logger: Logger

    init(logger: Logger) {
        self.logger = logger
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // Visible in test output: a dropped connection fails the test that used it.
        logger.warning("mock APNs connection failed", metadata: ["error": "\(error)"])
        context.close(promise: nil)
    }
}
