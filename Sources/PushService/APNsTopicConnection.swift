import AsyncHTTPClient
import Foundation
import MDMStorage
import NIOCore
import NIOSSL
import Synchronization

/// Why a topic's push certificate cannot be presented to APNs.
enum APNsCertificateError: Error, Sendable, Equatable, CustomStringConvertible {
    case noCertificateInPEM
    case expired(Date)
    case unusable(String)

    var description: String {
        switch self {
        case .noCertificateInPEM: "no PEM certificate"
        case .expired(let notAfter): "expired \(notAfter)"
        case .unusable(let detail): detail
        }
    }
}

/// The pooled HTTP/2 client of one topic: mutual TLS with the topic's push certificate, many streams on one
/// connection. Callers lease it per request so that a replaced certificate's client closes only once its
/// in-flight requests are answered.
final class APNsTopicConnection: Sendable {
    /// What one request came to.
    enum Answer: Sendable {
        case response(status: Int, apnsID: String?, body: ByteBuffer)
        case transportFailure(any Error)
    }

    let topic: String
    private let client: HTTPClient
    private let lease = Mutex(Lease())

    private struct Lease {
        var inFlight = 0
        var retired = false
        var closing: Task<Void, Never>?
    }

    /// APNs error bodies are a short JSON object; anything longer is not from APNs.
    private static let maxBodyBytes = 64 * 1024

    init(record: PushCertificateRecord, configuration: APNsConfiguration) throws(APNsCertificateError) {
        var tls = TLSConfiguration.makeClientConfiguration()
        do {
            let chain = try NIOSSLCertificate.fromPEMBytes(Array(record.certificatePEM.utf8))
            guard !chain.isEmpty else { throw APNsCertificateError.noCertificateInPEM }
            tls.certificateChain = chain.map { .certificate($0) }
            tls.privateKey = .privateKey(try NIOSSLPrivateKey(bytes: Array(record.privateKeyPEM.utf8), format: .pem))
            if !configuration.additionalTrustRoots.isEmpty {
                tls.additionalTrustRoots = [.certificates(configuration.additionalTrustRoots)]
            }
            // The client builds its TLS context only when it first connects; building one here turns a key
            // that does not belong to the certificate into a load failure instead of a connection timeout.
            _ = try NIOSSLContext(configuration: tls)
        } catch let error as APNsCertificateError {
            throw error
        } catch {
            throw .unusable("\(error)")
        }

        var http = HTTPClient.Configuration(
            tlsConfiguration: tls,
            redirectConfiguration: .disallow,
            timeout: HTTPClient.Configuration.Timeout(connect: TimeAmount(configuration.requestTimeout))
        )
        http.httpVersion = .automatic
        // Until ALPN has settled on h2, the pool treats APNs as an HTTP/1 host and would open a connection per
        // waiting request up to this limit; APNs speaks only HTTP/2, so one connection carries every stream.
        http.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = 1
        // APNs asks providers to keep connections open rather than reconnect per burst.
        http.connectionPool.idleTimeout = .minutes(10)
        self.topic = record.topic
        self.client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: http)
    }

    /// Takes a lease for one request; `false` once the connection is retired.
    func acquire() -> Bool {
        lease.withLock { lease in
            guard !lease.retired else { return false }
            lease.inFlight += 1
            return true
        }
    }

    func release() {
        lease.withLock { lease in
            lease.inFlight -= 1
            if lease.retired, lease.inFlight == 0 {
                startClosing(&lease)
            }
        }
    }

    /// Takes no new leases and closes once the last in-flight request has its answer.
    func retire() {
        lease.withLock { lease in
            lease.retired = true
            if lease.inFlight == 0 {
                startClosing(&lease)
            }
        }
    }

    /// Whether the connection has been closed or is closing.
    var isClosing: Bool {
        lease.withLock { $0.closing != nil }
    }

    /// Closes the pool now, failing whatever is in flight, and waits until it is closed.
    func close() async {
        let closing = lease.withLock { lease in
            lease.retired = true
            return startClosing(&lease)
        }
        await closing.value
    }

    @discardableResult
    private func startClosing(_ lease: inout Lease) -> Task<Void, Never> {
        if let closing = lease.closing { return closing }
        let closing = Task<Void, Never> { [client] in
            // Fails only when already shut down, which `closing` rules out.
            try? await client.shutdown()
        }
        lease.closing = closing
        return closing
    }

    /// Sends `request` and reads the whole answer: an unread body would make the client reset the stream.
    func execute(_ request: HTTPClientRequest, timeout: Duration) async -> Answer {
        do {
            let response = try await client.execute(request, timeout: TimeAmount(timeout))
            let body = try await response.body.collect(upTo: Self.maxBodyBytes)
            return .response(
                status: Int(response.status.code),
                apnsID: response.headers.first(name: "apns-id"),
                body: body
            )
        } catch {
            return .transportFailure(error)
        }
    }
}
