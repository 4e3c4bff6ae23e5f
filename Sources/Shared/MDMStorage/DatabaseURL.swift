import Foundation
import NIOSSL
import PostgresNIO

/// A PostgreSQL connection URL as libpq spells it:
/// `postgres://user:password@host:port/database?sslmode=require` (`postgresql://` too), or a
/// Unix socket with `postgres://user@/database?host=/run/postgresql` (a socket directory, or
/// the socket file itself).
///
/// `description` redacts the password, so the value can be logged.
package struct DatabaseURL: Sendable, Hashable, CustomStringConvertible {
    /// libpq's `sslmode` values. `prefer` and `require` encrypt without verifying the server
    /// certificate, as libpq does; `verify-ca` checks the chain, `verify-full` the host name too.
    package enum SSLMode: String, Sendable, Hashable, CaseIterable {
        case disable
        case prefer
        case require
        case verifyCA = "verify-ca"
        case verifyFull = "verify-full"
    }

    package var host: String?
    package var port: Int
    /// The path of the server's socket file, when connecting through a Unix socket.
    package var unixSocketPath: String?
    package var username: String
    package var password: String?
    package var database: String?
    package var sslMode: SSLMode

    package static let defaultPort = 5432

    /// Parses `string`. The error names what is wrong and never repeats the password.
    package init(_ string: String) throws(DatabaseURLError) {
        guard let components = URLComponents(string: string) else {
            throw DatabaseURLError("not a URL")
        }
        guard let scheme = components.scheme?.lowercased(), scheme == "postgres" || scheme == "postgresql" else {
            throw DatabaseURLError("scheme must be postgres:// or postgresql://")
        }
        guard let username = Self.decoded(components.percentEncodedUser), !username.isEmpty else {
            throw DatabaseURLError("missing user name (postgres://USER@host/database)")
        }
        if let port = components.port {
            guard (1...65_535).contains(port) else { throw DatabaseURLError("port \(port) out of range") }
            self.port = port
        } else {
            self.port = Self.defaultPort
        }
        self.username = username
        self.password = Self.decoded(components.percentEncodedPassword)
        let path = Self.decoded(components.percentEncodedPath) ?? ""
        let database = path.hasPrefix("/") ? String(path.dropFirst()) : path
        guard !database.contains("/") else { throw DatabaseURLError("database name contains '/'") }
        self.database = database.isEmpty ? nil : database

        var sslMode = SSLMode.prefer
        var socketOrHost: String?
        for item in components.queryItems ?? [] {
            switch item.name {
            case "sslmode":
                guard let value = item.value, let mode = SSLMode(rawValue: value) else {
                    let allowed = SSLMode.allCases.map(\.rawValue).joined(separator: ", ")
                    throw DatabaseURLError("sslmode '\(item.value ?? "")' is not one of \(allowed)")
                }
                sslMode = mode
            case "host":
                guard let value = item.value, !value.isEmpty else { throw DatabaseURLError("empty host parameter") }
                socketOrHost = value
            default:
                throw DatabaseURLError("unsupported parameter '\(item.name)' (supported: sslmode, host)")
            }
        }
        self.sslMode = sslMode

        let authorityHost = components.host.flatMap { $0.isEmpty ? nil : Self.unbracketed($0) }
        if let socketOrHost, socketOrHost.hasPrefix("/") {
            self.host = nil
            self.unixSocketPath =
                socketOrHost.contains(".s.PGSQL.") ? socketOrHost : "\(socketOrHost)/.s.PGSQL.\(self.port)"
        } else if let host = socketOrHost ?? authorityHost {
            self.host = host
            self.unixSocketPath = nil
        } else {
            throw DatabaseURLError("missing host (postgres://user@HOST/database or ?host=/socket/directory)")
        }
    }

    /// The client configuration for this URL. `maximumConnections` sizes the pool (postgres-nio's
    /// default when `nil`).
    package func configuration(maximumConnections: Int? = nil) -> PostgresClient.Configuration {
        var configuration: PostgresClient.Configuration
        if let unixSocketPath {
            configuration = .init(
                unixSocketPath: unixSocketPath,
                username: username,
                password: password,
                database: database
            )
        } else {
            configuration = .init(
                host: host ?? "localhost",
                port: port,
                username: username,
                password: password,
                database: database,
                tls: tls
            )
        }
        if let maximumConnections {
            configuration.options.maximumConnections = maximumConnections
        }
        return configuration
    }

    /// The same server and credentials with another database.
    package func with(database: String?) -> DatabaseURL {
        var copy = self
        copy.database = database
        return copy
    }

    /// The full URL, password included: for handing to another process, never for logs.
    package var urlString: String { render(password: password) }

    package var description: String { render(password: password == nil ? nil : "***") }

    private var tls: PostgresClient.Configuration.TLS {
        switch sslMode {
        case .disable:
            return .disable
        case .prefer:
            return .prefer(Self.tlsConfiguration(verification: .none))
        case .require:
            return .require(Self.tlsConfiguration(verification: .none))
        case .verifyCA:
            return .require(Self.tlsConfiguration(verification: .noHostnameVerification))
        case .verifyFull:
            return .require(Self.tlsConfiguration(verification: .fullVerification))
        }
    }

    private static func tlsConfiguration(verification: CertificateVerification) -> TLSConfiguration {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.certificateVerification = verification
        return configuration
    }

    private func render(password: String?) -> String {
        var result = "postgres://" + Self.encoded(username, .urlUserAllowed)
        if let password {
            result += ":" + Self.encoded(password, .urlPasswordAllowed)
        }
        result += "@"
        if let host, unixSocketPath == nil {
            result += host.contains(":") ? "[\(host)]" : Self.encoded(host, .urlHostAllowed)
        }
        result += ":\(port)/" + Self.encoded(database ?? "", .urlPathAllowed)
        var parameters: [String] = []
        if sslMode != .prefer {
            parameters.append("sslmode=\(sslMode.rawValue)")
        }
        if let unixSocketPath {
            parameters.append("host=" + Self.encoded(unixSocketPath, .urlQueryAllowed))
        }
        if !parameters.isEmpty {
            result += "?" + parameters.joined(separator: "&")
        }
        return result
    }

    private static func decoded(_ value: String?) -> String? {
        guard let value else { return nil }
        return value.removingPercentEncoding ?? value
    }

    private static func encoded(_ value: String, _ allowed: CharacterSet) -> String {
        var allowed = allowed
        allowed.remove(charactersIn: ":@/?#[]&=+")
        return value.addingPercentEncoding(withAllowedCharacters: allowed) ?? value
    }

    private static func unbracketed(_ host: String) -> String {
        guard host.hasPrefix("["), host.hasSuffix("]") else { return host }
        return String(host.dropFirst().dropLast())
    }
}

/// A database URL that cannot be used, and why.
package struct DatabaseURLError: Error, Sendable, Hashable, CustomStringConvertible {
    package var reason: String

    package init(_ reason: String) {
        self.reason = reason
    }

    package var description: String { "invalid database URL: \(reason)" }
}
