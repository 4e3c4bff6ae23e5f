import NIOCore
import NIOPosix

/// Ports tests pick for servers they may stop and start again: below Linux's default ephemeral
/// range (32768–60999), so neither an outgoing connection nor a server bound to port 0 is ever
/// handed one of them while its owner is down.
package let restartablePortRange = 20_000..<32_768

/// A loopback port nobody listens on right now, from `restartablePortRange`. Another process
/// can still take it before the caller binds, so callers retry on "address in use".
package func freeLoopbackPort() async throws -> Int {
    for _ in 0..<64 {
        let candidate = Int.random(in: restartablePortRange)
        let channel = try? await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(host: "127.0.0.1", port: candidate)
            .get()
        guard let channel else { continue }
        try await channel.close()
        return candidate
    }
    throw FreePortError.noFreePort
}

package enum FreePortError: Error {
    case noFreePort
    /// A bound channel that reports no local address.
    case noAddress
}
