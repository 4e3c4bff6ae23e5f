import NIOCore
import Synchronization

/// An encoded command on its way to the connection's event loop.
struct RedisRequest: Sendable {
    var bytes: ByteBuffer
    var reply: EventLoopPromise<RESPValue>
    var timeout: Duration?
    /// Names the command in a timeout error.
    var name: RESPArgument?
}

/// What a connection's callers can see of its handler from any thread: replies still owed
/// and whether the connection has stopped taking commands.
final class ConnectionStatus: Sendable {
    private let outstanding = Atomic<Int>(0)
    private let closed = Atomic<Bool>(false)

    /// Counted up when a command is sent and down when its reply arrives or the connection
    /// fails it, so a command whose caller gave up still counts until Redis has answered it.
    var outstandingReplies: Int {
        outstanding.load(ordering: .relaxed)
    }

    /// Set before any command is failed because of the closing, so a caller woken by such a
    /// failure never picks this connection again.
    var isClosed: Bool {
        closed.load(ordering: .acquiring)
    }

    func commandSent() {
        outstanding.add(1, ordering: .relaxed)
    }

    func replySettled() {
        outstanding.subtract(1, ordering: .relaxed)
    }

    func markClosed() {
        closed.store(true, ordering: .releasing)
    }
}

/// Writes commands and matches replies to them in order (Redis answers pipelined commands
/// first in, first out). Every waiting command fails when the connection ends, and a command
/// timeout ends the connection.
///
/// Commands arrive through `enqueue` rather than the pipeline's outbound path so that a
/// command sent after the channel closed (and its handlers were removed) still fails at once
/// instead of waiting forever.
final class RedisCommandHandler: ChannelInboundHandler {
    typealias InboundIn = RESPValue
    typealias OutboundOut = ByteBuffer

    private struct PendingReply {
        var promise: EventLoopPromise<RESPValue>
        var timeout: Scheduled<Void>?
    }

    private var context: ChannelHandlerContext?
    private var pending = CircularBuffer<PendingReply>(initialCapacity: 64)
    /// Set once the connection is unusable; later commands fail with it.
    private var closeReason: RedisError?
    /// The first error seen on the channel (a TLS failure, say), for connect errors.
    private(set) var firstError: (any Error)?
    private var flushScheduled = false
    private let status: ConnectionStatus

    init(status: ConnectionStatus) {
        self.status = status
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        markClosed(.connectionClosed)
        failAll(closeReason ?? .connectionClosed)
    }

    func enqueue(_ request: RedisRequest) {
        guard let context, closeReason == nil else {
            status.replySettled()
            request.reply.fail(closeReason ?? RedisError.connectionClosed)
            return
        }
        var timeoutTask: Scheduled<Void>?
        if let timeout = request.timeout {
            let reply = request.reply
            let name = request.name?.description ?? "(empty)"
            timeoutTask = context.eventLoop.assumeIsolated().scheduleTask(in: TimeAmount(timeout)) {
                // Redis answers in order, so a missing reply holds up every later one: the
                // server is stuck or unreachable. Closing lets the pool connect afresh (and fail
                // fast while it cannot) instead of every later command waiting out its timeout.
                self.markClosed(.connectionClosed)
                reply.fail(RedisError.commandTimedOut(command: name, after: timeout))
                if let context = self.context {
                    self.fail(context: context, reason: .connectionClosed)
                }
            }
        }
        pending.append(PendingReply(promise: request.reply, timeout: timeoutTask))
        context.write(wrapOutboundOut(request.bytes), promise: nil)
        // Commands sent from other threads arrive as separate event loop tasks; flushing once
        // after those already queued puts a burst of them into one write.
        if !flushScheduled {
            flushScheduled = true
            context.eventLoop.assumeIsolated().execute {
                self.flushScheduled = false
                self.context?.flush()
            }
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let value = unwrapInboundIn(data)
        guard let next = pending.popFirst() else {
            fail(context: context, reason: .protocolViolation("a reply arrived with no command waiting for it"))
            return
        }
        status.replySettled()
        next.timeout?.cancel()
        next.promise.succeed(value)
    }

    func channelInactive(context: ChannelHandlerContext) {
        markClosed(.connectionClosed)
        failAll(closeReason ?? .connectionClosed)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if firstError == nil {
            firstError = error
        }
        fail(context: context, reason: error as? RedisError ?? .connectionClosed)
    }

    private func fail(context: ChannelHandlerContext, reason: RedisError) {
        markClosed(reason)
        failAll(closeReason ?? reason)
        context.close(promise: nil)
    }

    private func markClosed(_ reason: RedisError) {
        if closeReason == nil {
            closeReason = reason
            status.markClosed()
        }
    }

    private func failAll(_ error: RedisError) {
        while let next = pending.popFirst() {
            status.replySettled()
            next.timeout?.cancel()
            next.promise.fail(error)
        }
    }
}
