import AsyncHTTPClient
import Foundation
import MDMTestSupport
import NIOCore
import NIOSSL
import Testing

@Suite("MockAPNs")
struct MockAPNsTests {
    private static let token = "0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9"
    private static let topic = "com.apple.mgmt.External.2b3c4d5e-test"

    @Test func pushWithClientCertificateIsAnsweredOverHTTP2AndRecorded() async throws {
        try await withMock { mock, identity in
            try await withClient(identity: identity, trusting: mock) { client in
                let response = try await push(client, mock, token: Self.token)
                #expect(response.status == .ok)
                #expect(response.version == .http2)
                let apnsID = try #require(response.headers.first(name: "apns-id"))
                #expect(!apnsID.isEmpty)

                let recorded = try await mock.waitForRequests(count: 1)
                let request = try #require(recorded.first)
                #expect(request.method == "POST")
                #expect(request.path == "/3/device/\(Self.token)")
                #expect(request.token == Self.token)
                #expect(request.header("apns-topic") == Self.topic)
                #expect(request.header("apns-push-type") == "mdm")
                #expect(request.header("APNS-PUSH-TYPE") == "mdm")
                #expect(String(decoding: request.body, as: UTF8.self) == #"{"mdm":"magic-1"}"#)
                #expect(request.clientCertificateSubject == "CN=\(Self.topic)")
            }
        }
    }

    @Test func requestedApnsIDIsEchoed() async throws {
        try await withMock { mock, identity in
            try await withClient(identity: identity, trusting: mock) { client in
                let id = "6F0E9E2C-7E36-4D4B-9E3A-0F6C1C0D2B1A"
                let response = try await push(client, mock, token: Self.token, apnsID: id)
                #expect(response.headers.first(name: "apns-id") == id)
            }
        }
    }

    @Test func clientWithoutCertificateCannotConnect() async throws {
        try await withMock { mock, _ in
            try await withClient(identity: nil, trusting: mock) { client in
                // The client retries a failed connection until the request's deadline, so keep it short.
                await #expect(throws: (any Error).self) {
                    try await push(client, mock, token: Self.token, timeout: .seconds(2))
                }
            }
            #expect(await mock.requests().isEmpty)
        }
    }

    @Test func clientCertificateFromAnotherCAIsRefused() async throws {
        try await withMock { mock, _ in
            let otherCA = try TestCertificateAuthority.make(commonName: "Other CA")
            let stranger = try otherCA.issueDeviceIdentity(commonName: Self.topic, keyKind: .p256)
            try await withClient(identity: stranger, trusting: mock) { client in
                // The client retries a failed connection until the request's deadline, so keep it short.
                await #expect(throws: (any Error).self) {
                    try await push(client, mock, token: Self.token, timeout: .seconds(2))
                }
            }
            #expect(await mock.requests().isEmpty)
        }
    }

    @Test func unknownPathIsAnswered404AndOtherMethods405() async throws {
        try await withMock { mock, identity in
            try await withClient(identity: identity, trusting: mock) { client in
                var badPath = HTTPClientRequest(url: mock.baseURL + "/3/other")
                badPath.method = .POST
                let notFound = try await client.execute(badPath, timeout: .seconds(60))
                #expect(notFound.status == .notFound)
                #expect(notFound.headers.first(name: "apns-id") != nil)
                #expect(try await bodyString(notFound) == #"{"reason":"BadPath"}"#)

                let get = HTTPClientRequest(url: mock.baseURL + "/3/device/\(Self.token)")
                let notAllowed = try await client.execute(get, timeout: .seconds(60))
                #expect(notAllowed.status == .methodNotAllowed)
                #expect(notAllowed.headers.first(name: "apns-id") != nil)
                #expect(try await bodyString(notAllowed) == #"{"reason":"MethodNotAllowed"}"#)
            }
        }
    }

    @Test func unregisteredTokenIsAnswered410WithTimestampEveryTime() async throws {
        try await withMock { mock, identity in
            mock.respond(to: Self.token, with: .unregistered)
            try await withClient(identity: identity, trusting: mock) { client in
                for _ in 0..<2 {
                    let response = try await push(client, mock, token: Self.token)
                    #expect(response.status == .gone)
                    #expect(response.headers.first(name: "apns-id") != nil)
                    let body = try await bodyString(response)
                    #expect(body.hasPrefix(#"{"reason":"Unregistered","timestamp":"#))
                }
                let other = try await push(client, mock, token: "ff00")
                #expect(other.status == .ok)
            }
        }
    }

    @Test func badDeviceTokenIsAnswered400() async throws {
        try await withMock { mock, identity in
            mock.respond(to: Self.token, with: .badDeviceToken)
            try await withClient(identity: identity, trusting: mock) { client in
                let response = try await push(client, mock, token: Self.token)
                #expect(response.status == .badRequest)
                #expect(response.headers.first(name: "apns-id") != nil)
                #expect(try await bodyString(response) == #"{"reason":"BadDeviceToken"}"#)
            }
        }
    }

    @Test func tooManyRequestsIsAnswered429TheScriptedTimesThenSucceeds() async throws {
        try await withMock { mock, identity in
            mock.respond(to: Self.token, with: .tooManyRequests(times: 2))
            try await withClient(identity: identity, trusting: mock) { client in
                for _ in 0..<2 {
                    let response = try await push(client, mock, token: Self.token)
                    #expect(response.status == .tooManyRequests)
                    #expect(response.headers.first(name: "apns-id") != nil)
                    #expect(try await bodyString(response) == #"{"reason":"TooManyRequests"}"#)
                }
                let recovered = try await push(client, mock, token: Self.token)
                #expect(recovered.status == .ok)
            }
        }
    }

    @Test func internalServerErrorIsAnswered500TheScriptedTimesThenSucceeds() async throws {
        try await withMock { mock, identity in
            mock.respond(to: Self.token, with: .internalServerError(times: 1))
            try await withClient(identity: identity, trusting: mock) { client in
                let failed = try await push(client, mock, token: Self.token)
                #expect(failed.status == .internalServerError)
                #expect(failed.headers.first(name: "apns-id") != nil)
                #expect(try await bodyString(failed) == #"{"reason":"InternalServerError"}"#)
                let recovered = try await push(client, mock, token: Self.token)
                #expect(recovered.status == .ok)
            }
        }
    }

    @Test func goAwayFailsTheStreamAndANewConnectionSucceeds() async throws {
        try await withMock { mock, identity in
            mock.respond(to: Self.token, with: .goAway)
            try await withClient(identity: identity, trusting: mock) { client in
                await #expect(throws: (any Error).self) {
                    let response = try await push(client, mock, token: Self.token)
                    _ = try await bodyString(response)
                }
                let recovered = try await push(client, mock, token: Self.token)
                #expect(recovered.status == .ok)
            }
            let recorded = try await mock.waitForRequests(count: 2)
            #expect(recorded.count == 2)
        }
    }

    @Test func concurrentRequestsAreAllAnsweredWithDistinctIDsAndRecorded() async throws {
        try await withMock { mock, identity in
            try await withClient(identity: identity, trusting: mock) { client in
                // The connection first (TLS and HTTP/2 settings), then the burst on it.
                #expect(try await push(client, mock, token: String(repeating: "f", count: 64)).status == .ok)
                let ids = try await withThrowingTaskGroup(of: String?.self) { group in
                    for index in 0..<500 {
                        group.addTask {
                            let response = try await push(client, mock, token: String(format: "%064x", index))
                            return response.status == .ok ? response.headers.first(name: "apns-id") : nil
                        }
                    }
                    var ids: [String?] = []
                    for try await id in group {
                        ids.append(id)
                    }
                    return ids
                }
                let answered = ids.compactMap { $0 }
                #expect(answered.count == 500)
                #expect(Set(answered).count == 500)
                let recorded = try await mock.waitForRequests(count: 501)
                #expect(Set(recorded.compactMap(\.token)).count == 501)
            }
        }
    }

    @Test func waitingForMoreRequestsThanArriveTimesOut() async throws {
        try await withMock { mock, _ in
            await #expect(throws: MockAPNsError.timedOut(expected: 1, received: 0)) {
                try await mock.waitForRequests(count: 1, timeout: .milliseconds(50))
            }
        }
    }
}

private func withMock(_ body: (MockAPNs, TestDeviceIdentity) async throws -> Void) async throws {
    let pushCA = try TestCertificateAuthority.make(commonName: "Push CA")
    let identity = try pushCA.issueDeviceIdentity(commonName: "com.apple.mgmt.External.2b3c4d5e-test", keyKind: .p256)
    let mock = try await MockAPNs.start(trustRoots: [pushCA.certificate])
    do {
        try await body(mock, identity)
    } catch {
        try await mock.shutdown()
        throw error
    }
    try await mock.shutdown()
}

private func withClient(
    identity: TestDeviceIdentity?,
    trusting mock: MockAPNs,
    _ body: (HTTPClient) async throws -> Void
) async throws {
    var tls = TLSConfiguration.makeClientConfiguration()
    tls.trustRoots = .certificates([try NIOSSLCertificate(bytes: Array(mock.serverTrustRootPEM.utf8), format: .pem)])
    if let identity {
        tls.certificateChain = [
            .certificate(try NIOSSLCertificate(bytes: Array(identity.certificatePEM.utf8), format: .pem))
        ]
        tls.privateKey = .privateKey(try NIOSSLPrivateKey(bytes: Array(identity.privateKeyPEM.utf8), format: .pem))
    }
    var configuration = HTTPClient.Configuration(tlsConfiguration: tls)
    configuration.httpVersion = .automatic
    // One connection carries every stream, as APNs clients do; a burst must not open one
    // connection per request before HTTP/2 is agreed.
    configuration.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = 1
    let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    do {
        try await body(client)
    } catch {
        try await client.shutdown()
        throw error
    }
    try await client.shutdown()
}

@discardableResult
private func push(
    _ client: HTTPClient,
    _ mock: MockAPNs,
    token: String,
    apnsID: String? = nil,
    // Generous: every suite runs at once on two cores.
    timeout: TimeAmount = .seconds(60)
) async throws -> HTTPClientResponse {
    var request = HTTPClientRequest(url: mock.baseURL + "/3/device/" + token)
    request.method = .POST
    request.headers.add(name: "apns-push-type", value: "mdm")
    request.headers.add(name: "apns-topic", value: "com.apple.mgmt.External.2b3c4d5e-test")
    if let apnsID {
        request.headers.add(name: "apns-id", value: apnsID)
    }
    request.body = .bytes(ByteBuffer(string: #"{"mdm":"magic-1"}"#))
    return try await client.execute(request, timeout: timeout)
}

private func bodyString(_ response: HTTPClientResponse) async throws -> String {
    String(buffer: try await response.body.collect(upTo: 1 << 16))
}
