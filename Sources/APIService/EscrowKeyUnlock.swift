import AsyncHTTPClient
import Foundation
import Hummingbird
import Logging
import MDMServerSupport
import MDMStorage
import NIOCore
import NIOHTTP1
import NIOSSL

/// The fields of an escrow key unlock (Activation Lock bypass) request, split the way Apple's
/// endpoint wants them: device identifiers in the query, audit fields and the key in the form.
struct EscrowKeyUnlockRequest: Sendable, Equatable {
    var topic: String
    var query: [(String, String)]
    var form: [(String, String)]

    static let required = ["topic", "serial", "productType", "orgName", "guid", "escrowKey"]
    static let queryFields = ["serial", "productType", "imei", "imei2", "meid"]
    static let formFields = ["orgName", "guid", "escrowKey"]

    /// From the caller's `application/x-www-form-urlencoded` body.
    init(form body: String) throws(RequestFailure) {
        var fields: [String: String] = [:]
        for pair in body.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1).map {
                String($0).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? String($0)
            }
            guard let name = parts.first, !name.isEmpty else { continue }
            fields[name] = parts.count > 1 ? parts[1] : ""
        }
        let missing = Self.required.filter { fields[$0, default: ""].isEmpty }
        guard missing.isEmpty else {
            throw .badRequest("missing escrow key unlock parameters: \(missing.joined(separator: ", "))")
        }
        topic = fields["topic", default: ""]
        query = Self.queryFields.compactMap { name in fields[name].flatMap { $0.isEmpty ? nil : (name, $0) } }
        form = Self.formFields.compactMap { name in fields[name].map { (name, $0) } }
    }

    static func == (lhs: Self, rhs: Self) -> Bool {
        lhs.topic == rhs.topic && lhs.query.elementsEqual(rhs.query, by: ==) && lhs.form.elementsEqual(rhs.form, by: ==)
    }

    static func encode(_ pairs: [(String, String)]) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return pairs.map { name, value in
            "\(name)=\(value.addingPercentEncoding(withAllowedCharacters: allowed) ?? value)"
        }.joined(separator: "&")
    }
}

/// `POST /v1/escrowkeyunlock` (NanoMDM-compatible): forwards the request to Apple's escrow key
/// unlock endpoint over mutual TLS with the topic's push certificate and relays the answer.
struct EscrowKeyUnlockController: Sendable {
    var certificates: any PushCertificateStore
    /// Apple's endpoint, or a test server.
    var endpoint: String
    /// Extra trust roots for the endpoint (tests); the system's otherwise.
    var trustRoots: [NIOSSLCertificate]?
    var maxBodyBytes: Int
    var timeout: Duration = .seconds(30)

    static let appleEndpoint = "https://deviceservices-external.apple.com/deviceservicesworkers/escrowKeyUnlock"

    func addRoutes<Context: RequestContext>(to group: RouterGroup<Context>) {
        group.post("escrowkeyunlock") { request, context in try await self.unlock(request, logger: context.logger) }
    }

    func unlock(_ request: Request, logger: Logger) async throws -> Response {
        let body = try await request.body.collect(upTo: maxBodyBytes)
        let unlock = try EscrowKeyUnlockRequest(form: String(buffer: body))
        guard let certificate = try await certificates.fetchPushCertificate(topic: unlock.topic) else {
            throw RequestFailure.notFound("no push certificate for topic \(unlock.topic)")
        }
        var tls = TLSConfiguration.makeClientConfiguration()
        do {
            tls.certificateChain = try NIOSSLCertificate.fromPEMBytes(Array(certificate.certificatePEM.utf8))
                .map { .certificate($0) }
            tls.privateKey = .privateKey(
                try NIOSSLPrivateKey(bytes: Array(certificate.privateKeyPEM.utf8), format: .pem))
        } catch {
            throw EscrowKeyUnlockError.unusableCertificate(unlock.topic)
        }
        if let trustRoots { tls.trustRoots = .certificates(trustRoots) }
        var configuration = HTTPClient.Configuration(tlsConfiguration: tls)
        configuration.httpVersion = .automatic
        // One client per request: unlocks are rare, and each needs its topic's identity.
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        do {
            var outbound = HTTPClientRequest(url: endpoint + "?" + EscrowKeyUnlockRequest.encode(unlock.query))
            outbound.method = .POST
            outbound.headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded")
            outbound.body = .bytes(ByteBuffer(string: EscrowKeyUnlockRequest.encode(unlock.form)))
            let response = try await client.execute(outbound, timeout: .init(timeout))
            let answer = try await response.body.collect(upTo: 1 << 20)
            try await client.shutdown()
            logger.info("escrow key unlock answered", metadata: ["status": "\(response.status.code)"])
            var headers = HTTPFields()
            if let type = response.headers.first(name: "Content-Type") { headers[.contentType] = type }
            return Response(
                status: .init(code: Int(response.status.code), reasonPhrase: response.status.reasonPhrase),
                headers: headers,
                body: .init(byteBuffer: answer)
            )
        } catch {
            try? await client.shutdown()
            logger.warning("escrow key unlock failed", metadata: ["error": "\(error)"])
            throw EscrowKeyUnlockError.unreachable
        }
    }
}

enum EscrowKeyUnlockError: HTTPMappableError {
    case unusableCertificate(String)
    case unreachable

    var status: HTTPResponse.Status {
        switch self {
        case .unusableCertificate: .internalServerError
        case .unreachable: .badGateway
        }
    }

    var reason: String {
        switch self {
        case .unusableCertificate(let topic): "the push certificate of \(topic) cannot be used for TLS"
        case .unreachable: "Apple's escrow key unlock endpoint could not be reached"
        }
    }
}
