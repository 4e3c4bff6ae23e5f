import Foundation
import Synchronization

/// The Redis server of the test run and per-test key namespaces.
///
/// The server comes from `MDM_TEST_REDIS_URL` (such as `redis://127.0.0.1:PORT`);
/// `deploy/local/test` starts a throwaway server and sets it. Tests share that server and
/// stay apart by prefixing every key with their own `TestRedisKeyspace`.
package enum TestRedis {
    package static let environmentKey = "MDM_TEST_REDIS_URL"

    /// Whether Redis tests should run: the server is configured, or this is CI, where a missing
    /// server must fail the run rather than skip it.
    package static var isEnabled: Bool {
        let environment = ProcessInfo.processInfo.environment
        return environment[environmentKey] != nil || environment["CI"] == "true"
    }

    /// The URL of the shared test server.
    ///
    /// - Throws: `TestRedisError.notConfigured` when `MDM_TEST_REDIS_URL` is not set.
    package static func url() throws -> String {
        guard let value = ProcessInfo.processInfo.environment[environmentKey], !value.isEmpty else {
            throw TestRedisError.notConfigured
        }
        return withGenerousConnectTimeout(value)
    }

    /// Tests run many suites at once on small CI machines; a connect (TCP plus the first PING)
    /// or a command can then take seconds. Tests that check the timeouts set their own.
    package static func withGenerousConnectTimeout(_ url: String) -> String {
        guard !url.contains("connect_timeout_ms=") else { return url }
        return url + (url.contains("?") ? "&" : "?") + "connect_timeout_ms=30000&command_timeout_ms=30000"
    }

    /// A key prefix no other test (or test process) uses.
    package static func keyspace(_ label: String = "test") -> TestRedisKeyspace {
        let suffix = String(UInt64.random(in: 0...UInt64.max), radix: 36)
        return TestRedisKeyspace(prefix: "mdm-test:\(label):\(ProcessInfo.processInfo.processIdentifier):\(suffix):")
    }
}

/// Keys of one test: `keyspace.key("stream")` → `mdm-test:label:pid:random:stream`.
package struct TestRedisKeyspace: Sendable {
    package let prefix: String

    package func key(_ name: String) -> String {
        prefix + name
    }
}

package enum TestRedisError: Error, CustomStringConvertible {
    case notConfigured
    case serverNotInstalled
    case serverDidNotStart(String)

    package var description: String {
        switch self {
        case .notConfigured:
            "\(TestRedis.environmentKey) is not set: Redis tests need a server URL such as "
                + "redis://127.0.0.1:PORT. Run them with deploy/local/test, which starts a throwaway server "
                + "and sets it."
        case .serverNotInstalled:
            "redis-server is not on PATH (Debian: apt-get install redis-server)"
        case .serverDidNotStart(let output):
            "redis-server did not start: \(output)"
        }
    }
}

/// A `redis-server` process of a test's own, on a free loopback port, for tests that kill or
/// restart the server or need a password or TLS. Nothing is persisted.
///
/// The server runs under a small shell watchdog that kills it as soon as the test process
/// closes the watchdog's standard input, by `kill()` or by exiting (even by crashing), so no
/// server outlives its test run.
package final class TestRedisServer: Sendable {
    /// PEM files for a server that accepts only TLS.
    package struct TLSFiles: Sendable {
        package var certificate: String
        package var privateKey: String
        package var certificateAuthority: String

        package init(certificate: String, privateKey: String, certificateAuthority: String) {
            self.certificate = certificate
            self.privateKey = privateKey
            self.certificateAuthority = certificateAuthority
        }
    }

    package let port: Int
    package let password: String?
    package let tls: TLSFiles?
    private let launched: LaunchedServer

    private init(port: Int, password: String?, tls: TLSFiles?, launched: LaunchedServer) {
        self.port = port
        self.password = password
        self.tls = tls
        self.launched = launched
    }

    /// `redis://[:password@]127.0.0.1:port`, or `rediss://…` for a TLS server.
    package var url: String {
        let credentials = password.map { ":\($0)@" } ?? ""
        return TestRedis.withGenerousConnectTimeout(
            "\(tls == nil ? "redis" : "rediss")://\(credentials)127.0.0.1:\(port)"
        )
    }

    /// Starts a server and returns once it accepts connections.
    ///
    /// - Parameters:
    ///   - port: A specific port (to restart a server where it was); by default a free one is
    ///     probed for.
    ///   - tls: Serve TLS only (on `port`), with these files.
    ///   - arguments: Further `redis-server` options.
    package static func start(
        port: Int? = nil,
        password: String? = nil,
        tls: TLSFiles? = nil,
        arguments: [String] = [],
        timeout: Duration = .seconds(10)
    ) async throws -> TestRedisServer {
        let executable = try serverExecutable()
        var lastOutput = ""
        for _ in 0..<(port == nil ? 20 : 1) {
            let candidate = port ?? Int.random(in: restartablePortRange)
            var serverArguments = [
                executable, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no",
                "--loglevel", "notice",
            ]
            if let tls {
                serverArguments += [
                    "--port", "0", "--tls-port", "\(candidate)", "--tls-cert-file", tls.certificate,
                    "--tls-key-file", tls.privateKey, "--tls-ca-cert-file", tls.certificateAuthority,
                    "--tls-auth-clients", "no",
                ]
            } else {
                serverArguments += ["--port", "\(candidate)"]
            }
            if let password {
                serverArguments += ["--requirepass", password]
            }
            serverArguments += arguments
            let launched = try LaunchedServer(arguments: serverArguments)
            switch await launched.readiness(timeout: timeout) {
            case .ready:
                return TestRedisServer(port: candidate, password: password, tls: tls, launched: launched)
            case .failed(let output):
                await launched.kill()
                lastOutput = output
                // Another process owns the port: probe the next one.
                if port == nil, output.contains("Address already in use") {
                    continue
                }
                throw TestRedisError.serverDidNotStart(output)
            }
        }
        throw TestRedisError.serverDidNotStart(lastOutput)
    }

    /// Kills the server (SIGKILL, as a crash would) and waits until it has exited; the kernel
    /// closes its connections. This is also how to stop it.
    package func kill() async {
        await launched.kill()
    }

    /// Starts a new server on the same port with the same password and TLS files.
    package func restarted(arguments: [String] = []) async throws -> TestRedisServer {
        try await Self.start(port: port, password: password, tls: tls, arguments: arguments)
    }

    private static func serverExecutable() throws -> String {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        for directory in path.split(separator: ":") {
            let candidate = "\(directory)/redis-server"
            if FileManager.default.isExecutableFile(atPath: candidate) {
                return candidate
            }
        }
        throw TestRedisError.serverNotInstalled
    }
}

private enum Readiness: Sendable {
    case ready
    case failed(String)
}

/// The watchdog shell and its server: output collected until the server is ready, then
/// drained; exit observed.
private final class LaunchedServer: Sendable {
    /// Runs the server in the background; when standard input reaches EOF (the test closed it
    /// or died), kills it. Exits with the server's status once the server is gone.
    private static let watchdog = """
        exec 3<&0
        "$@" &
        server=$!
        { read -r _ <&3; kill -9 "$server" 2>/dev/null; } &
        watcher=$!
        exec 3<&-
        wait "$server"
        status=$?
        kill -9 "$watcher" 2>/dev/null
        exit "$status"
        """

    private struct State {
        var output = ""
        var readiness: Readiness?
        var readinessWaiter: CheckedContinuation<Readiness, Never>?
        var exited = false
        var exitWaiters: [CheckedContinuation<Void, Never>] = []
    }

    private let process = Process()
    private let input = Pipe()
    private let state = Mutex(State())

    init(arguments: [String]) throws {
        let output = Pipe()
        // The mask inherited from a Swift concurrency thread blocks signals the shell needs
        // (SIGCHLD for `wait`); `env --default-signal` resets and unblocks them.
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["--default-signal", "/bin/sh", "-c", Self.watchdog, "redis-watchdog"] + arguments
        process.standardInput = input
        process.standardOutput = output
        process.standardError = output
        output.fileHandleForReading.readabilityHandler = { [weak self] handle in
            let data = handle.availableData
            if data.isEmpty {
                handle.readabilityHandler = nil
            }
            self?.received(data)
        }
        process.terminationHandler = { [weak self] _ in self?.exited() }
        try process.run()
    }

    /// Waits until the server logs that it accepts connections, exits, or `timeout` passes.
    func readiness(timeout: Duration) async -> Readiness {
        await withTaskGroup(of: Readiness.self) { group in
            group.addTask {
                await withCheckedContinuation { continuation in
                    let known = self.state.withLock { state -> Readiness? in
                        if state.readiness == nil {
                            state.readinessWaiter = continuation
                        }
                        return state.readiness
                    }
                    if let known {
                        continuation.resume(returning: known)
                    }
                }
            }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return .failed("no readiness line within \(timeout)")
            }
            let first = await group.next() ?? .failed("")
            group.cancelAll()
            settle(first)
            return state.withLock { $0.readiness } ?? first
        }
    }

    /// Closes the watchdog's input, which kills the server, and waits for both to exit.
    func kill() async {
        try? input.fileHandleForWriting.close()
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let exited = state.withLock { state in
                if !state.exited {
                    state.exitWaiters.append(continuation)
                }
                return state.exited
            }
            if exited {
                continuation.resume()
            }
        }
    }

    private func received(_ data: Data) {
        let ready = state.withLock { state in
            // Only the start-up output matters; later log lines are drained and dropped.
            guard state.readiness == nil else {
                return false
            }
            state.output += String(decoding: data, as: UTF8.self)
            return state.output.contains("Ready to accept connections")
        }
        if ready {
            settle(.ready)
        } else if data.isEmpty {
            settle(.failed(state.withLock { $0.output }))
        }
    }

    private func exited() {
        let waiters = state.withLock { state in
            state.exited = true
            defer { state.exitWaiters = [] }
            return state.exitWaiters
        }
        for waiter in waiters {
            waiter.resume()
        }
        settle(.failed(state.withLock { $0.output }))
    }

    /// Records the first readiness outcome and wakes whoever waits for it.
    private func settle(_ readiness: Readiness) {
        let waiter = state.withLock { state -> CheckedContinuation<Readiness, Never>? in
            guard state.readiness == nil else {
                return nil
            }
            state.readiness = readiness
            defer { state.readinessWaiter = nil }
            return state.readinessWaiter
        }
        waiter?.resume(returning: readiness)
    }
}
