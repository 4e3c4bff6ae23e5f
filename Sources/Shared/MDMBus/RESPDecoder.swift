import NIOCore

/// Turns the bytes of a connection into replies. Protocol violations are thrown into the
/// pipeline, where `RedisCommandHandler` fails the waiting commands and closes the connection.
struct RESPDecoder: ByteToMessageDecoder {
    typealias InboundOut = RESPValue

    private var parser = RESPParser()

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let value = try parser.next(from: &buffer) else {
            return .needMoreData
        }
        context.fireChannelRead(wrapInboundOut(value))
        return .continue
    }

    mutating func decodeLast(
        context: ChannelHandlerContext,
        buffer: inout ByteBuffer,
        seenEOF: Bool
    ) throws -> DecodingState {
        // A partial reply at EOF is dropped: the commands waiting for it fail as the
        // connection closes.
        try decode(context: context, buffer: &buffer)
    }
}
