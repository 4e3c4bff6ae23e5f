import NIOCore
import NIOSSL

/// Where and how to connect to Redis.
///
/// Usually made from a URL: `redis://[[user]:password@]host[:port][/db][?option=value&…]` or
/// `rediss://…` for TLS. Options: `pool_size` (connections for ordinary commands, default 4),
/// `connect_timeout_ms` (default 2000), `command_timeout_ms` (default 5000; 0 disables it) and,
/// for `rediss`, `tls_ca_file` (PEM bundle trusted instead of the system roots).
package struct RedisConfiguration: Sendable {
    package var host: String
    package var port: Int
    /// ACL user; `nil` authenticates as the default user when a password is set.
    package var username: String?
    package var password: String?
    /// Selected on connect when not 0.
    package var database: Int
    /// TLS for every connection (`rediss://`); `nil` for plain TCP.
    package var tls: TLSConfiguration?
    /// Connections for ordinary (non-blocking) commands.
    package var poolSize: Int
    /// Bounds TCP connect, TLS handshake and `AUTH`/`SELECT` together.
    package var connectTimeout: Duration
    /// Default bound on the wait for a reply; `nil` waits as long as the connection lives.
    package var commandTimeout: Duration?
    package var reconnectBackoff: RedisBackoff

    package init(
        host: String = "127.0.0.1",
        port: Int = 6379,
        username: String? = nil,
        password: String? = nil,
        database: Int = 0,
        tls: TLSConfiguration? = nil,
        poolSize: Int = 4,
        connectTimeout: Duration = .seconds(2),
        commandTimeout: Duration? = .seconds(5),
        reconnectBackoff: RedisBackoff = RedisBackoff()
    ) {
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.database = database
        self.tls = tls
        self.poolSize = poolSize
        self.connectTimeout = connectTimeout
        self.commandTimeout = commandTimeout
        self.reconnectBackoff = reconnectBackoff
    }

    /// `host:port`, with brackets around an IPv6 address. Safe to log.
    package var endpoint: String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    /// The configuration as a URL with the password masked. Safe to log.
    package var redactedURL: String {
        var url = tls == nil ? "redis://" : "rediss://"
        if password != nil {
            url += (username.map { percentEncoded($0) } ?? "") + ":***@"
        }
        url += endpoint
        if database != 0 {
            url += "/\(database)"
        }
        return url
    }
}

extension RedisConfiguration {
    /// Parses a `redis://` or `rediss://` URL (see the type's documentation).
    ///
    /// - Throws: `RedisError.invalidURL`; the message never repeats the URL or its password.
    package init(url: String) throws {
        guard let schemeEnd = url.firstRange(of: "://") else {
            throw RedisError.invalidURL(reason: "expected redis://host:port or rediss://host:port")
        }
        let scheme = url[..<schemeEnd.lowerBound].lowercased()
        guard scheme == "redis" || scheme == "rediss" else {
            throw RedisError.invalidURL(reason: "unsupported scheme \"\(scheme)\" (use redis or rediss)")
        }
        var rest = url[schemeEnd.upperBound...]
        guard !rest.contains("#") else {
            throw RedisError.invalidURL(reason: "a fragment (#…) is not allowed")
        }
        var query: Substring = ""
        if let mark = rest.firstIndex(of: "?") {
            query = rest[rest.index(after: mark)...]
            rest = rest[..<mark]
        }
        var path: Substring = ""
        if let slash = rest.firstIndex(of: "/") {
            path = rest[rest.index(after: slash)...]
            rest = rest[..<slash]
        }
        self.init()
        if let at = rest.lastIndex(of: "@") {
            try parseUserInfo(rest[..<at])
            rest = rest[rest.index(after: at)...]
        }
        try parseHostAndPort(rest)
        if !path.isEmpty {
            guard let database = Int(path), database >= 0 else {
                throw RedisError.invalidURL(reason: "the path must be a database number, got \"\(path)\"")
            }
            self.database = database
        }
        if scheme == "rediss" {
            tls = .makeClientConfiguration()
        }
        try parseQuery(query)
    }

    private mutating func parseUserInfo(_ userInfo: Substring) throws {
        guard let colon = userInfo.firstIndex(of: ":") else {
            throw RedisError.invalidURL(reason: "credentials need a password: use user:password@ or :password@")
        }
        let user = try percentDecoded(userInfo[..<colon], part: "user name")
        username = user.isEmpty ? nil : user
        password = try percentDecoded(userInfo[userInfo.index(after: colon)...], part: "password")
    }

    private mutating func parseHostAndPort(_ hostAndPort: Substring) throws {
        var portText: Substring?
        if hostAndPort.hasPrefix("[") {
            guard let close = hostAndPort.firstIndex(of: "]") else {
                throw RedisError.invalidURL(reason: "unterminated IPv6 address")
            }
            host = String(hostAndPort[hostAndPort.index(after: hostAndPort.startIndex)..<close])
            let after = hostAndPort[hostAndPort.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else {
                    throw RedisError.invalidURL(reason: "unexpected characters after the IPv6 address")
                }
                portText = after.dropFirst()
            }
        } else if let colon = hostAndPort.firstIndex(of: ":") {
            host = String(hostAndPort[..<colon])
            portText = hostAndPort[hostAndPort.index(after: colon)...]
        } else {
            host = String(hostAndPort)
        }
        guard !host.isEmpty else {
            throw RedisError.invalidURL(reason: "the host is missing")
        }
        if let portText {
            guard let port = Int(portText), (1...65_535).contains(port) else {
                throw RedisError.invalidURL(reason: "invalid port \"\(portText)\"")
            }
            self.port = port
        }
    }

    private mutating func parseQuery(_ query: Substring) throws {
        for item in query.split(separator: "&") {
            let parts = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let name = String(parts[0])
            let value = parts.count == 2 ? try percentDecoded(parts[1], part: name) : ""
            switch name {
            case "pool_size":
                guard let size = Int(value), (1...256).contains(size) else {
                    throw RedisError.invalidURL(reason: "pool_size must be 1…256, got \"\(value)\"")
                }
                poolSize = size
            case "connect_timeout_ms":
                guard let milliseconds = Int(value), milliseconds > 0 else {
                    throw RedisError.invalidURL(reason: "connect_timeout_ms must be a positive integer")
                }
                connectTimeout = .milliseconds(milliseconds)
            case "command_timeout_ms":
                guard let milliseconds = Int(value), milliseconds >= 0 else {
                    throw RedisError.invalidURL(reason: "command_timeout_ms must be 0 (none) or a positive integer")
                }
                commandTimeout = milliseconds == 0 ? nil : .milliseconds(milliseconds)
            case "tls_ca_file":
                guard tls != nil else {
                    throw RedisError.invalidURL(reason: "tls_ca_file needs the rediss scheme")
                }
                guard !value.isEmpty else {
                    throw RedisError.invalidURL(reason: "tls_ca_file needs a path")
                }
                tls?.trustRoots = .file(value)
            default:
                throw RedisError.invalidURL(reason: "unknown option \"\(name)\"")
            }
        }
    }
}

/// Exponential backoff between failed connection attempts, bounded and jittered so replicas
/// that lost Redis together do not reconnect in lockstep.
package struct RedisBackoff: Sendable, Hashable {
    /// Delay after the first failure.
    package var initial: Duration
    /// No delay is longer than this.
    package var maximum: Duration

    package init(initial: Duration = .milliseconds(100), maximum: Duration = .seconds(5)) {
        self.initial = initial
        self.maximum = maximum
    }

    /// Delay before the next attempt after `failures` consecutive failed attempts: `initial`
    /// doubled per further failure, capped at `maximum`, then scaled by `jitter` (50–100 %).
    package func delay(afterFailures failures: Int, jitter: Double = .random(in: 0.5...1)) -> Duration {
        guard failures > 0 else {
            return .zero
        }
        let doublings = min(failures - 1, 30)
        let exponential = initial * (1 << doublings)
        return min(exponential, maximum) * jitter
    }
}

private func percentDecoded(_ text: Substring, part: String) throws -> String {
    guard text.contains("%") else {
        return String(text)
    }
    var bytes: [UInt8] = []
    var iterator = text.utf8.makeIterator()
    while let byte = iterator.next() {
        guard byte == UInt8(ascii: "%") else {
            bytes.append(byte)
            continue
        }
        guard let high = iterator.next().flatMap(hexValue), let low = iterator.next().flatMap(hexValue) else {
            throw RedisError.invalidURL(reason: "bad percent-encoding in the \(part)")
        }
        bytes.append(high << 4 | low)
    }
    return String(decoding: bytes, as: UTF8.self)
}

private func hexValue(_ byte: UInt8) -> UInt8? {
    switch byte {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
    case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
    case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
    default: nil
    }
}

private func percentEncoded(_ text: String) -> String {
    var result = ""
    for byte in text.utf8 {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
            UInt8(ascii: "~"):
            result.unicodeScalars.append(Unicode.Scalar(byte))
        default:
            result += "%" + (byte < 16 ? "0" : "") + String(byte, radix: 16, uppercase: true)
        }
    }
    return result
}
