import AsyncHTTPClient
import Foundation
import MDMTestSupport
import NIOCore
import NIOHTTP1
import Testing

/// Whether tests that start the built executables, PostgreSQL and nginx should run.
let processTestsEnabled = RoleProcess.isEnabled && TestDatabase.isEnabled

/// What every role process of a test shares: the device CA (as a PEM file), the API key, and
/// settings for JSON logs and a small pool. One environment serves all four roles: each reads
/// the settings it knows.
struct ProcessFixture: Sendable {
    let ca: TestCertificateAuthority
    let directory: URL
    let apiKey: String

    static func make() throws -> ProcessFixture {
        let ca = try TestCertificateAuthority.make()
        let directory = try makeTemporaryDirectory(prefix: "mdm-process-test")
        try Data(ca.certificatePEM.utf8).write(to: directory.appendingPathComponent("device-ca.pem"))
        return ProcessFixture(ca: ca, directory: directory, apiKey: "process-test-key-\(UUID().uuidString)")
    }

    func environment(databaseURL: String, _ extra: [String: String] = [:]) -> [String: String] {
        [
            "MDM_DATABASE_URL": databaseURL,
            "MDM_DATABASE_POOL_SIZE": "4",
            "MDM_DATABASE_STARTUP_TIMEOUT": "60",
            // PushService needs Redis; the API uses it for pushes. A stream of their own.
            "MDM_REDIS_URL": (try? TestRedis.url()) ?? "redis://127.0.0.1:6379",
            "MDM_PUSH_STREAM": "mdm:test:\(UUID().uuidString.prefix(8)):push",
            "MDM_CA_CERTS": directory.appendingPathComponent("device-ca.pem").path,
            "MDM_API_KEY": apiKey,
            "MDM_LOG_FORMAT": "json",
            "MDM_SHUTDOWN_GRACE_SECONDS": "20",
        ].merging(extra) { _, extra in extra }
    }

    func removeFiles() {
        try? FileManager.default.removeItem(at: directory)
    }

    func makeDevice(checkinURL: String, commandURL: String) throws -> SimulatedDevice {
        let udid = UUID().uuidString
        return SimulatedDevice(
            udid: udid,
            identity: try ca.issueDeviceIdentity(commonName: udid),
            checkinURL: checkinURL,
            commandURL: commandURL
        )
    }

    /// `PUT /v1/enqueue/…?nopush=1` on `apiBaseURL`; returns the status.
    func enqueue(_ plist: Data, to ids: [String], apiBaseURL: String) async throws -> Int {
        var request = HTTPClientRequest(url: apiBaseURL + "/v1/enqueue/" + ids.joined(separator: ",") + "?nopush=1")
        request.method = .PUT
        request.headers.add(name: "Authorization", value: "Bearer \(apiKey)")
        request.body = .bytes(ByteBuffer(bytes: plist))
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(60))
        _ = try await response.body.collect(upTo: 16 << 20)
        return Int(response.status.code)
    }
}

/// A command plist with a fresh UUID.
func makeCommand(_ requestType: String = "ProfileList", uuid: String = UUID().uuidString) throws
    -> (uuid: String, plist: Data)
{
    let plist = try PropertyListSerialization.data(
        fromPropertyList: ["CommandUUID": uuid, "Command": ["RequestType": requestType]],
        format: .xml,
        options: 0
    )
    return (uuid, plist)
}

/// Runs `body` for every element with at most `width` running at once.
func forEachConcurrently<T: Sendable>(
    _ items: [T],
    width: Int,
    _ body: @escaping @Sendable (T) async throws -> Void
) async throws {
    try await withThrowingTaskGroup(of: Void.self) { group in
        var iterator = items.makeIterator()
        for _ in 0..<width {
            guard let item = iterator.next() else { break }
            group.addTask { try await body(item) }
        }
        while try await group.next() != nil {
            if let item = iterator.next() {
                group.addTask { try await body(item) }
            }
        }
    }
}

/// Every line a role wrote is one JSON object (the roles run with `MDM_LOG_FORMAT=json`).
func expectJSONLines(_ output: String, role: String, sourceLocation: SourceLocation = #_sourceLocation) {
    for line in output.split(separator: "\n") where !line.isEmpty {
        let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
        #expect(
            object != nil, "\(role) wrote a line that is not a JSON object: \(line)", sourceLocation: sourceLocation)
    }
}
