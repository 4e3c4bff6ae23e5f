/// Something commands can be sent to: a `RedisConnection` or a `RedisClient` pool. The typed
/// commands (`xadd`, `xreadgroup`, …) are written once against this protocol.
package protocol RedisCommandSending: Sendable {
    /// Sends one command and waits for its reply; `timeout` `nil` means the configured command
    /// timeout. Error replies are thrown as `RedisError.server`.
    func send(_ command: [RESPArgument], timeout: Duration?) async throws -> RESPValue

    /// Sends a command that may wait on the server for up to `block` (zero: indefinitely),
    /// such as `XREADGROUP … BLOCK`. A pool runs it on a dedicated connection so it holds up
    /// no other caller.
    func sendBlocking(_ command: [RESPArgument], block: Duration) async throws -> RESPValue
}

extension RedisCommandSending {
    /// Sends one command with the configured command timeout.
    package func send(_ command: [RESPArgument]) async throws -> RESPValue {
        try await send(command, timeout: nil)
    }
}
