import AsyncHTTPClient
import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

package enum TestNginxError: Error, CustomStringConvertible {
    case notInstalled
    case renderFailed(ProcessExit, output: String)
    case didNotStart(String)

    package var description: String {
        switch self {
        case .notInstalled: "nginx not found: set MDM_TEST_NGINX (deploy/local/test does) or install nginx"
        case .renderFailed(let exit, let output): "deploy/nginx/render-local failed (\(exit)):\n\(output)"
        case .didNotStart(let output): "nginx did not start:\n\(output)"
        }
    }
}

/// nginx in front of role processes, with the production routing: the configuration comes
/// from `deploy/nginx/render-local`, which wraps the same `swiftmdm/{http,routes}.conf` that
/// production, compose and Kubernetes include, so a test through it exercises the real
/// proxy rules (`/mdm` and `/checkin` routing, headers, keepalive to the upstreams).
///
/// Plain HTTP on a free loopback port; every port given becomes a server of the role's
/// upstream group. Runs in the foreground under `WatchedProcess`.
package final class TestNginx: Sendable {
    package static let executableKey = "MDM_TEST_NGINX"

    package let port: Int
    package let directory: URL
    private let process: WatchedProcess

    /// `http://127.0.0.1:<port>`.
    package var baseURL: String { "http://127.0.0.1:\(port)" }
    /// The access log (format `swiftmdm`: upstream address and status per request).
    package var accessLog: URL { directory.appendingPathComponent("logs/nginx-access.log") }

    private init(port: Int, directory: URL, process: WatchedProcess) {
        self.port = port
        self.directory = directory
        self.process = process
    }

    /// Starts nginx routing to the given role ports (on 127.0.0.1). A role without ports
    /// routes to a closed port (502).
    package static func start(
        api: [Int] = [],
        checkin: [Int] = [],
        command: [Int] = [],
        timeout: Duration = .seconds(30)
    ) async throws -> TestNginx {
        let nginx = try executable()
        let directory = try makeTemporaryDirectory(prefix: "mdm-nginx")
        func addresses(_ ports: [Int]) -> String {
            // Port 9 (discard) has no listener on loopback: requests there fail with 502.
            (ports.isEmpty ? [9] : ports).map { "127.0.0.1:\($0)" }.joined(separator: ",")
        }
        var lastOutput = ""
        for _ in 0..<5 {
            let port = try await freeLoopbackPort()
            var render = [
                repositoryRoot().appendingPathComponent("deploy/nginx/render-local").path,
                "--dir", directory.path, "--listen", "127.0.0.1:\(port)",
                "--api", addresses(api), "--checkin", addresses(checkin), "--command", addresses(command),
            ]
            if getuid() == 0 {
                // Workers drop privileges; render-local wants the user only when we are root.
                render += ["--user", "nobody nogroup"]
            }
            let (renderExit, renderOutput) = try await runTool(["bash"] + render)
            guard renderExit == .exited(0) else { throw TestNginxError.renderFailed(renderExit, output: renderOutput) }
            let process = try await WatchedProcess.start(
                name: "nginx",
                arguments: [
                    nginx, "-p", directory.path + "/", "-c", directory.appendingPathComponent("nginx.conf").path,
                    "-e", directory.appendingPathComponent("logs/nginx-error.log").path, "-g", "daemon off;",
                ],
                environment: ["PATH": "/usr/sbin:/usr/bin:/sbin:/bin"],
                logFile: directory.appendingPathComponent("nginx-output.log")
            )
            let server = TestNginx(port: port, directory: directory, process: process)
            if try await server.waitUntilServing(timeout: timeout) {
                return server
            }
            await process.kill()
            lastOutput = process.output
            let errorLog = directory.appendingPathComponent("logs/nginx-error.log")
            lastOutput += (try? String(contentsOf: errorLog, encoding: .utf8)) ?? ""
            // Another process took the port between the probe and nginx's bind: try another.
            guard lastOutput.contains("Address already in use") else { break }
        }
        try? FileManager.default.removeItem(at: directory)
        throw TestNginxError.didNotStart(lastOutput)
    }

    /// Fast shutdown (SIGTERM), then the files go (unless `keepFiles`).
    package func stop(keepFiles: Bool = false) async {
        process.send(SIGTERM)
        if (try? await process.waitForExit(timeout: .seconds(10))) == nil {
            await process.kill()
        }
        if !keepFiles { try? FileManager.default.removeItem(at: directory) }
    }

    /// Probes nginx's own `/livez` every 50 ms until it answers; false when nginx exits first.
    private func waitUntilServing(timeout: Duration) async throws -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if process.exitStatus != nil { return false }
            let request = HTTPClientRequest(url: baseURL + "/livez")
            if let response = try? await HTTPClient.shared.execute(request, timeout: .seconds(2)) {
                _ = try? await response.body.collect(upTo: 1 << 16)
                if response.status.code == 200 { return true }
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        return false
    }

    private static func executable() throws -> String {
        if let configured = ProcessInfo.processInfo.environment[executableKey], !configured.isEmpty {
            return configured
        }
        for candidate in ["/usr/sbin/nginx", "/usr/bin/nginx", "/usr/local/sbin/nginx"]
        where FileManager.default.isExecutableFile(atPath: candidate) {
            return candidate
        }
        throw TestNginxError.notInstalled
    }

    /// The checkout this file was compiled from (render-local and the shared nginx files
    /// live there).
    private static func repositoryRoot() -> URL {
        URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent()  // MDMTestSupport
            .deletingLastPathComponent()  // Shared
            .deletingLastPathComponent()  // Sources
            .deletingLastPathComponent()
    }
}
