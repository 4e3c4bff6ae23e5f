import AsyncHTTPClient
import Foundation
import NIOCore

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

package enum RoleProcessError: Error, CustomStringConvertible {
    case binaryDirectoryNotConfigured
    case executableMissing(String)
    case noPort(String)
    case notReady(String, lastStatus: Int?, output: String)

    package var description: String {
        switch self {
        case .binaryDirectoryNotConfigured:
            "\(RoleProcess.binaryDirectoryKey) is not set: process tests run the built executables from "
                + "that directory (`swift build --show-bin-path`). Run them with deploy/local/test, which sets it."
        case .executableMissing(let path):
            "\(path) does not exist or is not executable: build the package first (swift build)"
        case .noPort(let output):
            "the role never wrote its port file; its output:\n\(output)"
        case .notReady(let name, let status, let output):
            "\(name) did not become ready (last /readyz status: \(status.map(String.init) ?? "none")); output:\n\(output)"
        }
    }
}

/// One of SwiftMDM's executables run as a real process, the way a supervisor runs it.
///
/// The executable comes from `MDM_TEST_BIN_DIR` (`deploy/local/test` sets it to
/// `swift build --show-bin-path`). The role listens on loopback, on port 0 unless told
/// otherwise, and writes the port it got to `MDM_PORT_FILE`, which is how this learns it.
/// Output (standard output and error) goes to `logFile` for diagnostics. The process is
/// killed when the test process goes away (see `WatchedProcess`); call `stop()` or
/// `terminate()` and `waitForExit` to end it yourself.
package final class RoleProcess: Sendable {
    package static let binaryDirectoryKey = "MDM_TEST_BIN_DIR"

    /// The four roles by executable name.
    package enum Role: String, Sendable, CaseIterable {
        case api = "APIService"
        case checkin = "CheckinService"
        case command = "CommandService"
        case push = "PushService"
    }

    /// Whether process tests should run: the binaries are configured, or this is CI, where a
    /// missing configuration must fail the run rather than skip it.
    package static var isEnabled: Bool {
        let environment = ProcessInfo.processInfo.environment
        return environment[binaryDirectoryKey] != nil || environment["CI"] == "true"
    }

    package let executable: String
    package let port: Int
    package let process: WatchedProcess
    /// The temporary directory holding the port file and the log.
    package let directory: URL

    /// `http://127.0.0.1:<port>`.
    package var baseURL: String { "http://127.0.0.1:\(port)" }
    package var logFile: URL { process.logFile }
    /// Everything the process has written so far.
    package var output: String { (try? String(contentsOf: logFile, encoding: .utf8)) ?? process.output }

    private init(executable: String, port: Int, process: WatchedProcess, directory: URL) {
        self.executable = executable
        self.port = port
        self.process = process
        self.directory = directory
    }

    /// The path of a built executable.
    package static func executablePath(_ name: String) throws -> String {
        guard let directory = ProcessInfo.processInfo.environment[binaryDirectoryKey], !directory.isEmpty else {
            throw RoleProcessError.binaryDirectoryNotConfigured
        }
        let path = URL(fileURLWithPath: directory).appendingPathComponent(name).path
        guard FileManager.default.isExecutableFile(atPath: path) else {
            throw RoleProcessError.executableMissing(path)
        }
        return path
    }

    /// Starts `role` and returns once it listens (and, with `waitForReady`, once `/readyz`
    /// answers 200).
    ///
    /// - Parameters:
    ///   - environment: Settings for the role (`MDM_DATABASE_URL`, …). The test process's own
    ///     `MDM_*` variables are not passed on; everything else is.
    ///   - port: A fixed port (to restart a role where it was); 0 lets the kernel pick one.
    package static func start(
        _ role: Role,
        environment: [String: String],
        arguments: [String] = [],
        port: Int = 0,
        waitForReady: Bool = true,
        timeout: Duration = .seconds(90)
    ) async throws -> RoleProcess {
        try await start(
            executable: role.rawValue, environment: environment, arguments: arguments, port: port,
            waitForReady: waitForReady, timeout: timeout)
    }

    /// `start(_:)` for any executable of the package that serves like a role.
    package static func start(
        executable: String,
        environment: [String: String],
        arguments: [String] = [],
        port: Int = 0,
        waitForReady: Bool = true,
        timeout: Duration = .seconds(90)
    ) async throws -> RoleProcess {
        let path = try executablePath(executable)
        let directory = try makeTemporaryDirectory(prefix: "mdm-\(executable)")
        let portFile = directory.appendingPathComponent("port")
        var roleEnvironment = processEnvironment()
        roleEnvironment["MDM_LISTEN"] = "127.0.0.1:\(port)"
        roleEnvironment["MDM_PORT_FILE"] = portFile.path
        roleEnvironment.merge(environment) { _, given in given }
        let process = try await WatchedProcess.start(
            name: executable,
            arguments: [path] + arguments,
            environment: roleEnvironment,
            logFile: directory.appendingPathComponent("output.log")
        )
        let deadline = ContinuousClock.now + timeout
        let boundPort: Int
        do {
            boundPort = try await waitForPortFile(portFile, process: process, deadline: deadline)
        } catch {
            await process.kill()
            throw error
        }
        let role = RoleProcess(executable: executable, port: boundPort, process: process, directory: directory)
        if waitForReady {
            do {
                try await role.waitUntilReady(timeout: deadline - ContinuousClock.now)
            } catch {
                await process.kill()
                throw error
            }
        }
        return role
    }

    /// Runs a one-shot command (`APIService migrate`) to completion.
    package static func run(
        _ role: Role,
        arguments: [String],
        environment: [String: String],
        timeout: Duration = .seconds(120)
    ) async throws -> (exit: ProcessExit, output: String) {
        let path = try executablePath(role.rawValue)
        let directory = try makeTemporaryDirectory(prefix: "mdm-\(role.rawValue)-run")
        defer { try? FileManager.default.removeItem(at: directory) }
        let process = try await WatchedProcess.start(
            name: "\(role.rawValue) \(arguments.joined(separator: " "))",
            arguments: [path] + arguments,
            environment: processEnvironment().merging(environment) { _, given in given },
            logFile: directory.appendingPathComponent("output.log")
        )
        let exit: ProcessExit
        do {
            exit = try await process.waitForExit(timeout: timeout)
        } catch {
            await process.kill()
            throw error
        }
        let output = (try? String(contentsOf: process.logFile, encoding: .utf8)) ?? process.output
        return (exit, output)
    }

    // MARK: Health

    /// The status `/readyz` answers now, or nil when nothing answers.
    package func readiness() async -> Int? {
        await status(of: "/readyz")
    }

    /// The status of a GET on `path`, or nil when nothing answers within 5 s.
    package func status(of path: String) async -> Int? {
        do {
            let response = try await HTTPClient.shared.execute(
                HTTPClientRequest(url: baseURL + path), timeout: .seconds(5))
            _ = try await response.body.collect(upTo: 1 << 20)
            return Int(response.status.code)
        } catch {
            return nil
        }
    }

    /// The body of `GET /metrics`.
    package func metrics() async throws -> String {
        let response = try await HTTPClient.shared.execute(
            HTTPClientRequest(url: baseURL + "/metrics"), timeout: .seconds(10))
        let body = try await response.body.collect(upTo: 16 << 20)
        return String(buffer: body)
    }

    /// Waits until `/readyz` answers 200.
    package func waitUntilReady(timeout: Duration = .seconds(60)) async throws {
        try await waitForReadiness(200, timeout: timeout)
    }

    /// Waits until `/readyz` answers `expected` (200 or 503), probing every 100 ms.
    package func waitForReadiness(_ expected: Int, timeout: Duration) async throws {
        let deadline = ContinuousClock.now + timeout
        var last: Int?
        while true {
            last = await readiness()
            if last == expected { return }
            if let exit = process.exitStatus {
                throw WatchedProcessError.exited(
                    "\(executable) while waiting for /readyz \(expected)", exit, output: output)
            }
            guard ContinuousClock.now < deadline else {
                throw RoleProcessError.notReady(executable, lastStatus: last, output: output)
            }
            try await Task.sleep(for: .milliseconds(100))
        }
    }

    // MARK: Signals and exit

    /// SIGTERM: the role drains and exits.
    package func terminate() {
        process.send(SIGTERM)
    }

    /// SIGKILL: the role dies at once, as in a crash.
    package func kill() {
        process.send(SIGKILL)
    }

    package func send(_ signal: Int32) {
        process.send(signal)
    }

    package func waitForExit(timeout: Duration = .seconds(60)) async throws -> ProcessExit {
        try await process.waitForExit(timeout: timeout)
    }

    /// Ends the process (SIGTERM, then SIGKILL after `grace`) and removes its directory unless
    /// `keepFiles`.
    @discardableResult
    package func stop(grace: Duration = .seconds(15), keepFiles: Bool = false) async -> ProcessExit {
        terminate()
        let exit: ProcessExit
        if let graceful = try? await process.waitForExit(timeout: grace) {
            exit = graceful
        } else {
            exit = await process.kill()
        }
        if !keepFiles { try? FileManager.default.removeItem(at: directory) }
        return exit
    }

    // MARK: Helpers

    /// This process's environment without `MDM_*` variables (they are test settings, or
    /// settings meant for another role).
    static func processEnvironment() -> [String: String] {
        ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("MDM_") }
    }

    /// Probes for the port file every 20 ms: the role writes it once, atomically, when it
    /// listens.
    private static func waitForPortFile(_ file: URL, process: WatchedProcess, deadline: ContinuousClock.Instant)
        async throws -> Int
    {
        while true {
            if let text = try? String(contentsOf: file, encoding: .utf8),
                let port = Int(text.trimmingCharacters(in: .whitespacesAndNewlines))
            {
                return port
            }
            if let exit = process.exitStatus {
                throw WatchedProcessError.exited("\(process.name) before listening", exit, output: process.output)
            }
            guard ContinuousClock.now < deadline else {
                throw RoleProcessError.noPort(process.output)
            }
            try await Task.sleep(for: .milliseconds(20))
        }
    }
}

/// A new directory under the temporary directory, readable by other users (servers started
/// as another user, nginx workers) but writable only by us.
package func makeTemporaryDirectory(prefix: String) throws -> URL {
    let url = FileManager.default.temporaryDirectory
        .appendingPathComponent("\(prefix)-\(ProcessInfo.processInfo.processIdentifier)-\(UUID().uuidString.prefix(8))")
    try FileManager.default.createDirectory(
        at: url, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
    return url
}
