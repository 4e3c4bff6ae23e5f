import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

package enum TestPostgresServerError: Error, CustomStringConvertible {
    case binariesNotFound
    case commandFailed(String, ProcessExit, output: String)
    case didNotStart(String)
    case notRunning

    package var description: String {
        switch self {
        case .binariesNotFound:
            "PostgreSQL server binaries (initdb, postgres) not found under /usr/lib/postgresql/*/bin "
                + "(Debian: apt-get install postgresql), nor in MDM_PG_BINDIR"
        case .commandFailed(let command, let exit, let output): "\(command) failed (\(exit)):\n\(output)"
        case .didNotStart(let output): "postgres did not start:\n\(output)"
        case .notRunning: "the server is not running"
        }
    }
}

/// A PostgreSQL server of a test's own: a fresh cluster in a temporary directory, on a free
/// loopback port, for tests that stop and restart the database under running roles. `stop()`
/// and `start()` keep the port and the data, so clients reconnect to the same URL.
///
/// Runs `postgres` in the foreground under `WatchedProcess` (it dies with the test process).
/// As root it runs as the `postgres` OS user (PostgreSQL refuses root). Durability is off
/// (`fsync=off`): test data only.
package final class TestPostgresServer: Sendable {
    package let port: Int
    package let directory: URL
    private let binaries: URL
    private let current = Mutex<WatchedProcess?>(nil)

    /// Superuser URL of the `postgres` database (trust authentication, no TLS).
    package var url: String { url(database: "postgres") }

    package func url(database: String) -> String {
        "postgres://postgres@127.0.0.1:\(port)/\(database)?sslmode=disable"
    }

    private var dataDirectory: URL { directory.appendingPathComponent("data") }
    private var socketDirectory: URL { directory.appendingPathComponent("socket") }
    private var logFile: URL { directory.appendingPathComponent("postgres.log") }

    private init(port: Int, directory: URL, binaries: URL) {
        self.port = port
        self.directory = directory
        self.binaries = binaries
    }

    /// Initialises a cluster and starts it; tries another port when the chosen one is taken.
    package static func start(timeout: Duration = .seconds(60)) async throws -> TestPostgresServer {
        let binaries = try findBinaries()
        let directory = try makeTemporaryDirectory(prefix: "mdm-postgres")
        let data = directory.appendingPathComponent("data")
        let socket = directory.appendingPathComponent("socket")
        for path in [data, socket] {
            try FileManager.default.createDirectory(
                at: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        }
        if isRoot {
            try await checked(["chown", "-R", "postgres:postgres", directory.path])
        }
        try await checked(
            asServerUser + [
                binaries.appendingPathComponent("initdb").path, "-D", data.path, "-U", "postgres", "-E", "UTF8",
                "--locale=C", "--auth=trust", "--no-sync",
            ])
        var lastError: (any Error)?
        for _ in 0..<5 {
            let port = try await freeLoopbackPort()
            let server = TestPostgresServer(port: port, directory: directory, binaries: binaries)
            do {
                try await server.start(timeout: timeout)
                return server
            } catch {
                lastError = error
            }
        }
        try? FileManager.default.removeItem(at: directory)
        throw lastError ?? TestPostgresServerError.didNotStart("")
    }

    /// Starts the server again on the same port and data directory; returns once it accepts
    /// connections.
    package func start(timeout: Duration = .seconds(60)) async throws {
        let process = try await WatchedProcess.start(
            name: "postgres",
            arguments: Self.asServerUser + [
                binaries.appendingPathComponent("postgres").path, "-D", dataDirectory.path,
                "-c", "listen_addresses=127.0.0.1", "-p", "\(port)", "-k", socketDirectory.path,
                "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
                "-c", "max_connections=300",
            ],
            environment: ["PATH": "/usr/bin:/bin", "LANG": "C"],
            logFile: logFile
        )
        let ready = await process.waitForOutput(
            containing: "database system is ready to accept connections", timeout: timeout)
        guard ready else {
            await process.kill()
            throw TestPostgresServerError.didNotStart(process.output)
        }
        current.withLock { $0 = process }
    }

    /// Fast shutdown (SIGINT): sessions are ended, the server exits; waits until it has.
    package func stop(timeout: Duration = .seconds(60)) async throws {
        guard let process = current.withLock({ $0 }) else { throw TestPostgresServerError.notRunning }
        process.send(SIGINT)
        do {
            _ = try await process.waitForExit(timeout: timeout)
        } catch {
            await process.kill()
        }
        current.withLock { $0 = nil }
    }

    /// Kills the server and deletes its files.
    package func destroy() async {
        if let process = current.withLock({ $0 }) {
            await process.kill()
        }
        current.withLock { $0 = nil }
        try? FileManager.default.removeItem(at: directory)
    }

    // MARK: Helpers

    private static var isRoot: Bool { getuid() == 0 }

    /// PostgreSQL refuses to run as root: drop to the `postgres` user (Debian's package
    /// creates it). `setpriv` execs in place, so signals reach postgres itself.
    private static var asServerUser: [String] {
        isRoot ? ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"] : []
    }

    private static func findBinaries() throws -> URL {
        if let configured = ProcessInfo.processInfo.environment["MDM_PG_BINDIR"], !configured.isEmpty {
            return URL(fileURLWithPath: configured)
        }
        let root = URL(fileURLWithPath: "/usr/lib/postgresql")
        let versions = (try? FileManager.default.contentsOfDirectory(atPath: root.path)) ?? []
        // The newest installed major version.
        for version in versions.sorted(by: { (Int($0) ?? 0) > (Int($1) ?? 0) }) {
            let bin = root.appendingPathComponent(version).appendingPathComponent("bin")
            if FileManager.default.isExecutableFile(atPath: bin.appendingPathComponent("postgres").path) {
                return bin
            }
        }
        throw TestPostgresServerError.binariesNotFound
    }

    private static func checked(_ arguments: [String]) async throws {
        let (exit, output) = try await runTool(arguments, environment: ["PATH": "/usr/sbin:/usr/bin:/sbin:/bin"])
        guard exit == .exited(0) else {
            throw TestPostgresServerError.commandFailed(arguments.joined(separator: " "), exit, output: output)
        }
    }
}
