import MDMBus
import NIOCore
import NIOPosix

/// A stand-in for Redis on loopback that answers each command with whatever `respond` returns:
/// raw bytes (possibly malformed), or `nil` to stay silent.
final class ScriptedRedisServer: Sendable {
    let port: Int
    private let channel: any Channel

    private init(port: Int, channel: any Channel) {
        self.port = port
        self.channel = channel
    }

    static func start(respond: @escaping @Sendable (_ command: [String]) -> String?) async throws -> ScriptedRedisServer
    {
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ScriptedHandler(respond: respond))
                }
            }
            .bind(host: "127.0.0.1", port: 0)
            .get()
        guard let port = channel.localAddress?.port else {
            throw ScriptedServerError.noPort
        }
        return ScriptedRedisServer(port: port, channel: channel)
    }

    var configuration: RedisConfiguration {
        // Generous: the scripted server shares a busy test process; tests of the connect timeout set their own.
        RedisConfiguration(host: "127.0.0.1", port: port, connectTimeout: .seconds(30), commandTimeout: .seconds(30))
    }

    func close() async {
        try? await channel.close()
    }
}

enum ScriptedServerError: Error {
    case noPort
}

private final class ScriptedHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let respond: @Sendable ([String]) -> String?
    private var parser = RESPParser()
    private var received = ByteBuffer()

    init(respond: @escaping @Sendable ([String]) -> String?) {
        self.respond = respond
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        received.writeBuffer(&bytes)
        while let command = try? parser.next(from: &received) {
            let arguments = command.array?.compactMap(\.string) ?? []
            if let reply = respond(arguments) {
                context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: reply)), promise: nil)
            }
        }
    }
}
