import Foundation
@_spi(FixedExpiryValidationTime) import X509

/// Verifies the identity a device presents: a detached CMS `Mdm-Signature` over the request
/// body, or a client certificate forwarded by a TLS-terminating proxy.
///
/// The signature is checked on every call; the chain check is remembered per certificate (by the
/// SHA-256 of its DER) for as long as the chain it verified with stays valid.
package struct DeviceIdentityVerifier: Sendable {
    /// How a certificate earns trust.
    package enum ChainPolicy: Sendable, Hashable {
        /// RFC 5280 path validation to one of the trust roots.
        case rfc5280
        /// As `.rfc5280`, and a certificate that is itself one of the trust roots is accepted on its
        /// own (validity period and clientAuth still checked) even though it is not a CA. For
        /// pinning device certificates whose issuing CA is unavailable: tests and migrations.
        case rfc5280OrPinnedLeaf
    }

    private let trustRoots: CertificateStore
    private let pinnedLeaves: Set<Certificate>
    private let intermediates: CertificateStore
    private let now: @Sendable () -> Date
    private let cache: ChainVerificationCache

    /// - Parameters:
    ///   - trustRoots: The CAs device certificates must chain to.
    ///   - intermediates: Certificates that may complete a chain, besides those embedded in a signature.
    ///   - now: The clock validity periods are checked against.
    ///   - chainPolicy: How a certificate earns trust.
    ///   - cacheCapacity: How many verified certificates to remember; 0 verifies every chain every time.
    package init(
        trustRoots: [Certificate],
        intermediates: [Certificate] = [],
        now: @escaping @Sendable () -> Date = Date.init,
        chainPolicy: ChainPolicy = .rfc5280,
        cacheCapacity: Int = 10_000
    ) {
        self.trustRoots = CertificateStore(trustRoots)
        self.pinnedLeaves = chainPolicy == .rfc5280OrPinnedLeaf ? Set(trustRoots) : []
        self.intermediates = CertificateStore(intermediates)
        self.now = now
        self.cache = ChainVerificationCache(capacity: cacheCapacity)
    }

    /// Verifies an `Mdm-Signature` header value (base64 of a detached CMS SignedData) over `body`.
    package func verifySignature(header: String, body: [UInt8]) async throws(DeviceIdentityError) -> DeviceIdentity {
        guard !CertificateText.isBlank(header) else {
            throw .missingIdentity
        }
        guard let encoded = CertificateText.base64Decoded(header) else {
            throw .malformedHeader("Mdm-Signature is not valid base64")
        }
        let signedData = try DetachedSignedData(berEncoded: encoded)
        let time = now()

        var signer: (identity: DeviceIdentity, certificate: Certificate)?
        var others: [Certificate] = []
        for der in signedData.certificates {
            let identity = DeviceIdentity(der: Array(der))
            if let entry = cache.entry(sha256: identity.sha256, at: time), signedData.identifies(entry.certificate) {
                try signedData.verifySignature(over: body, publicKey: entry.certificate.publicKey)
                return identity
            }
            let certificate: Certificate
            do {
                certificate = try Certificate(derEncoded: der)
            } catch {
                throw .malformedSignature("an embedded certificate is invalid: \(error)")
            }
            if signer == nil, signedData.identifies(certificate) {
                signer = (identity, certificate)
            } else {
                others.append(certificate)
            }
        }
        guard let signer else {
            throw .malformedSignature("no embedded certificate matches the signer")
        }
        try signedData.verifySignature(over: body, publicKey: signer.certificate.publicKey)
        try await verifyChain(signer.certificate, identity: signer.identity, embedded: others, at: time)
        return signer.identity
    }

    /// Verifies a certificate forwarded by the proxy: RFC 9440 (`:base64-DER:`), URL-escaped PEM
    /// (nginx `$ssl_client_escaped_cert`), plain PEM, or bare base64 DER.
    package func verifyForwardedCertificate(header: String) async throws(DeviceIdentityError) -> DeviceIdentity {
        let der = try CertificateText.forwardedCertificateDER(header)
        let identity = DeviceIdentity(der: der)
        let time = now()
        if cache.entry(sha256: identity.sha256, at: time) != nil {
            return identity
        }
        let certificate: Certificate
        do {
            certificate = try Certificate(derEncoded: der)
        } catch {
            throw .malformedHeader("the forwarded certificate is invalid: \(error)")
        }
        try await verifyChain(certificate, identity: identity, embedded: [], at: time)
        return identity
    }

    /// How many verified certificates are remembered.
    package var cachedCertificateCount: Int {
        cache.count
    }

    private func verifyChain(
        _ certificate: Certificate,
        identity: DeviceIdentity,
        embedded: [Certificate],
        at time: Date
    ) async throws(DeviceIdentityError) {
        let chain: [Certificate]
        if pinnedLeaves.contains(certificate) {
            guard certificate.notValidBefore <= time, time <= certificate.notValidAfter else {
                throw .untrustedCertificate("the pinned certificate is outside its validity period")
            }
            if case .failsToMeetPolicy(let reason) = ClientAuthenticationPolicy.evaluate(certificate) {
                throw .untrustedCertificate(reason.description)
            }
            chain = [certificate]
        } else {
            var verifier = Verifier(rootCertificates: trustRoots) {
                RFC5280Policy(fixedExpiryValidationTime: time)
                ClientAuthenticationPolicy()
            }
            let result = await verifier.validate(
                leaf: certificate,
                intermediates: intermediates.appending(contentsOf: embedded)
            )
            switch result {
            case .validCertificate(let validated):
                chain = Array(validated)
            case .couldNotValidate(let failures):
                throw .untrustedCertificate(
                    failures.first.map { $0.policyFailureReason.description } ?? "no chain to a trusted CA"
                )
            }
        }
        cache.insert(
            ChainVerificationCache.Entry(
                identity: identity,
                certificate: certificate,
                validFrom: chain.map(\.notValidBefore).max() ?? certificate.notValidBefore,
                validUntil: chain.map(\.notValidAfter).min() ?? certificate.notValidAfter
            )
        )
    }
}

extension DeviceIdentityVerifier {
    /// Loads every certificate of a PEM bundle file (text between blocks is ignored).
    package static func loadCertificates(pemFile path: String) throws(CertificateBundleError) -> [Certificate] {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw .unreadable(path: path, reason: "\(error)")
        }
        return try loadCertificates(pem: text)
    }

    /// Loads every certificate of a PEM bundle (text between blocks is ignored).
    package static func loadCertificates(pem: String) throws(CertificateBundleError) -> [Certificate] {
        guard let blocks = CertificateText.pemCertificates(in: pem) else {
            throw .invalidPEM
        }
        guard !blocks.isEmpty else {
            throw .noCertificates
        }
        var certificates: [Certificate] = []
        for (index, der) in blocks.enumerated() {
            do {
                certificates.append(try Certificate(derEncoded: der))
            } catch {
                throw .invalidCertificate(index: index, reason: "\(error)")
            }
        }
        return certificates
    }
}

extension DetachedSignedData {
    func identifies(_ certificate: Certificate) -> Bool {
        switch signer {
        case .issuerAndSerialNumber(let issuer, let serialNumber):
            return certificate.serialNumber == serialNumber && certificate.issuer == issuer
        case .subjectKeyIdentifier(let keyIdentifier):
            guard let subjectKeyIdentifier = try? certificate.extensions.subjectKeyIdentifier else {
                return false
            }
            return subjectKeyIdentifier.keyIdentifier == keyIdentifier
        }
    }
}
