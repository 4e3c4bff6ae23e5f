import Foundation
import HTTPTypes
import Hummingbird
import MDMTestSupport
import NIOCore
import Synchronization
import Testing

@Suite("CheckinService: /authproxy for bound devices")
struct AuthProxyTests {
    @Test func boundDeviceReachesTheUpstreamWithItsEnrollmentID() async throws {
        try await withUpstream { upstream, upstreamURL in
            var options = TestStack.Options()
            options.authProxyURL = URL(string: upstreamURL + "/assets-root")
            try await TestStack.with(options: options) { stack in
                let device = try stack.makeDevice()
                try await device.enroll()
                let reply = try await device.send(
                    body: Data(), to: stack.authProxyURL + "/declarations/asset-1.json?version=2", method: .GET)
                #expect(reply.status == 200)
                #expect(String(decoding: reply.body, as: UTF8.self) == "asset for \(device.udid)")
                #expect(reply.header("X-Upstream") == "yes")

                let seen = try #require(upstream.requests().first)
                #expect(seen.method == "GET")
                #expect(seen.path == "/assets-root/declarations/asset-1.json")
                #expect(seen.query == "version=2")
                #expect(seen.headers["x-enrollment-id"] == device.udid)
                #expect(seen.headers["mdm-signature"] == nil, "the device's signature stays with us")

                // A body goes through too.
                let posted = try await device.send(
                    body: Data("payload".utf8), to: stack.authProxyURL + "/upload", method: .POST)
                #expect(posted.status == 200)
                let upload = try #require(upstream.requests().last)
                #expect(upload.body == "payload")
                #expect(upload.headers["x-enrollment-id"] == device.udid)
            }
        }
    }

    @Test func unboundOrForeignCertificatesAreRefusedWith400() async throws {
        try await withUpstream { upstream, upstreamURL in
            var options = TestStack.Options()
            options.authProxyURL = URL(string: upstreamURL)
            try await TestStack.with(options: options) { stack in
                // Issued by the right CA but never enrolled: no binding.
                let stranger = try stack.makeDevice()
                #expect(
                    try await stranger.send(body: Data(), to: stack.authProxyURL + "/x", method: .GET).status == 400)
                // Issued by another CA.
                let otherCA = try TestCertificateAuthority.make(commonName: "Other CA")
                let foreign = SimulatedDevice(
                    identity: try otherCA.issueDeviceIdentity(commonName: "foreign"),
                    checkinURL: stack.checkinURL,
                    commandURL: stack.commandURL
                )
                #expect(try await foreign.send(body: Data(), to: stack.authProxyURL + "/x", method: .GET).status == 400)
                #expect(upstream.requests().isEmpty)
            }
        }
    }
}

extension TestStack {
    /// `/authproxy` on the stack's CheckinService.
    var authProxyURL: String {
        String(checkinURL.dropLast("/checkin".count)) + "/authproxy"
    }
}

/// A plain HTTP upstream that records what it is sent and answers with a per-device body.
final class RecordingUpstream: Sendable {
    struct Seen: Sendable {
        var method: String
        var path: String
        var query: String?
        var headers: [String: String]
        var body: String
    }

    private let seen = Mutex<[Seen]>([])

    func requests() -> [Seen] {
        seen.withLock { $0 }
    }

    func record(_ request: Request) async throws -> Response {
        let body = try await request.body.collect(upTo: 1 << 20)
        var headers: [String: String] = [:]
        for field in request.headers { headers[field.name.canonicalName] = field.value }
        let entry = Seen(
            method: request.method.rawValue,
            path: request.uri.path,
            query: request.uri.query,
            headers: headers,
            body: String(buffer: body)
        )
        seen.withLock { $0.append(entry) }
        let enrollment = headers["x-enrollment-id"] ?? "nobody"
        var responseHeaders = HTTPFields()
        if let name = HTTPField.Name("X-Upstream") { responseHeaders[name] = "yes" }
        return Response(
            status: .ok,
            headers: responseHeaders,
            body: .init(byteBuffer: ByteBuffer(string: "asset for \(enrollment)"))
        )
    }
}

func withUpstream<T: Sendable>(_ body: (RecordingUpstream, String) async throws -> T) async throws -> T {
    let upstream = RecordingUpstream()
    let router = Router()
    for method in [HTTPRequest.Method.get, .post, .put] {
        router.on("**", method: method) { request, _ in try await upstream.record(request) }
    }
    let reporter = PortReporter()
    let app = Application(
        router: router,
        configuration: .init(address: .hostname("127.0.0.1", port: 0)),
        onServerRunning: { channel in await reporter.report(channel.localAddress?.port ?? 0) },
        logger: TestStack.logger
    )
    return try await withRunningApplication(app, reporter: reporter) { port in
        try await body(upstream, "http://127.0.0.1:\(port)")
    }
}
