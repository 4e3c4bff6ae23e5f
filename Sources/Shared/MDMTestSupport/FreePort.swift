import NIOCore
import NIOPosix

/// A loopback port nobody listens on right now: the kernel's pick for port 0. Another process
/// can still take it before the caller binds, so callers retry on "address in use".
package func freeLoopbackPort() async throws -> Int {
    let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .bind(host: "127.0.0.1", port: 0)
        .get()
    let port = channel.localAddress?.port
    try await channel.close()
    guard let port else { throw FreePortError.noAddress }
    return port
}

package enum FreePortError: Error {
    case noAddress
}
