/// Errors of the Redis client. None of them carries a password.
package enum RedisError: Error, Sendable, Hashable {
    /// Redis answered the command with an error reply (`ERR …`, `WRONGTYPE …`, `NOGROUP …`).
    case server(String)
    /// The connection closed (or was lost) before the reply arrived. The command may or may
    /// not have been executed.
    case connectionClosed
    /// No reply within the command timeout. The command may still be executed by Redis. The
    /// connection is closed: commands sent after it on the same connection fail with
    /// `connectionClosed`.
    case commandTimedOut(command: String, after: Duration)
    /// Could not connect to, or complete the TLS handshake with, the server.
    case connectFailed(endpoint: String, reason: String)
    /// `AUTH` was refused (wrong password or user).
    case authenticationFailed(endpoint: String, message: String)
    /// The server sent something that is not RESP2, or a reply nobody asked for.
    case protocolViolation(String)
    /// The reply does not have the shape this command returns.
    case unexpectedReply(command: String, reply: String)
    /// The Redis URL cannot be used; the reason never repeats the URL (it may hold a password).
    case invalidURL(reason: String)
    /// `shutdown()` was called (or `run()` was cancelled).
    case clientShutDown
}

extension RedisError: CustomStringConvertible {
    package var description: String {
        switch self {
        case .server(let message):
            "Redis error reply: \(message)"
        case .connectionClosed:
            "the Redis connection closed before the reply arrived"
        case .commandTimedOut(let command, let after):
            "Redis command \(command) got no reply within \(after)"
        case .connectFailed(let endpoint, let reason):
            "cannot connect to Redis at \(endpoint): \(reason)"
        case .authenticationFailed(let endpoint, let message):
            "Redis at \(endpoint) refused the credentials: \(message)"
        case .protocolViolation(let detail):
            "Redis protocol violation: \(detail)"
        case .unexpectedReply(let command, let reply):
            "unexpected reply to Redis command \(command): \(reply)"
        case .invalidURL(let reason):
            "invalid Redis URL: \(reason)"
        case .clientShutDown:
            "the Redis client has shut down"
        }
    }
}
