import Foundation
import MDMTestSupport

/// A throwaway CA and a server certificate for `localhost` / 127.0.0.1, made with the
/// `openssl` command line tool.
enum TestCertificates {
    static func make() async throws -> TestRedisServer.TLSFiles {
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("mdm-bus-tls-\(UInt64.random(in: 0...UInt64.max))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        func path(_ name: String) -> String { directory.appendingPathComponent(name).path }
        try "subjectAltName=DNS:localhost,IP:127.0.0.1\n".write(
            toFile: path("san.ext"), atomically: true, encoding: .utf8)
        let key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        try await openssl(
            ["req", "-x509"] + key + [
                "-keyout", path("ca.key"), "-out", path("ca.pem"), "-days", "1", "-subj", "/CN=MDM Bus Test CA",
            ])
        try await openssl(
            ["req"] + key + ["-keyout", path("server.key"), "-out", path("server.csr"), "-subj", "/CN=localhost"])
        try await openssl([
            "x509", "-req", "-in", path("server.csr"), "-CA", path("ca.pem"), "-CAkey", path("ca.key"),
            "-CAcreateserial", "-out", path("server.pem"), "-days", "1", "-extfile", path("san.ext"),
        ])
        return TestRedisServer.TLSFiles(
            certificate: path("server.pem"),
            privateKey: path("server.key"),
            certificateAuthority: path("ca.pem")
        )
    }

    private static func openssl(_ arguments: [String]) async throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        let status = try await withCheckedThrowingContinuation {
            (continuation: CheckedContinuation<Int32, any Error>) in
            process.terminationHandler = { process in continuation.resume(returning: process.terminationStatus) }
            do {
                try process.run()
            } catch {
                process.terminationHandler = nil
                continuation.resume(throwing: error)
            }
        }
        guard status == 0 else {
            throw TestCertificateError.opensslFailed(arguments: arguments, status: status)
        }
    }
}

enum TestCertificateError: Error {
    case opensslFailed(arguments: [String], status: Int32)
}
