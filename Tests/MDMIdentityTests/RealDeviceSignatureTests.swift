import Foundation
import MDMIdentity
import MDMTestSupport
import Testing
import X509

/// The recorded `Mdm-Signature` of a real device. Its certificate came from a SCEP CA that the
/// signature does not embed and we do not have, so the chain check pins the certificate itself.
@Suite struct RealDeviceSignatureTests {
    let header: String
    let body: [UInt8]
    let leaf: Certificate

    init() throws {
        header = try FixtureFiles.text("MdmSignature.idle.header.txt")
        body = try FixtureFiles.bytes("MdmSignature.idle.body.plist")
        leaf = try #require(
            DeviceIdentityVerifier.loadCertificates(pemFile: FixtureFiles.url("MdmSignature.idle.certificate.pem").path)
                .first
        )
    }

    private func pinningVerifier() -> DeviceIdentityVerifier {
        DeviceIdentityVerifier(trustRoots: [leaf], now: { fixtureTime }, chainPolicy: .rfc5280OrPinnedLeaf)
    }

    @Test func realDeviceSignatureVerifiesWhenItsCertificateIsPinned() async throws {
        let identity = try await pinningVerifier().verifySignature(header: header, body: body)

        let pem = try FixtureFiles.text("MdmSignature.idle.certificate.pem")
        let expectedDER = try #require(CertificateText.pemCertificates(in: pem)?.first)
        #expect(identity.der == expectedDER)
        #expect(identity == DeviceIdentity(der: expectedDER))
    }

    @Test func realDeviceSignatureToleratesLineBreaksInTheHeader() async throws {
        var wrapped = ""
        for (offset, character) in header.enumerated() {
            if offset > 0, offset.isMultiple(of: 64) {
                wrapped += "\r\n "
            }
            wrapped.append(character)
        }
        let identity = try await pinningVerifier().verifySignature(header: wrapped + "\n", body: body)
        #expect(identity.der == (try CertificateText.pemCertificates(in: leafPEM())?.first))
    }

    @Test func realDeviceSignatureFailsForABodyChangedByOneByte() async throws {
        var changed = body
        changed[changed.count / 2] ^= 0x01
        let failure = await identityFailure { () async throws(DeviceIdentityError) in
            try await pinningVerifier().verifySignature(header: header, body: changed)
        }
        #expect(failure == .signatureMismatch)
    }

    @Test func realDeviceCertificateIsUntrustedWithoutItsCA() async throws {
        let otherCA = try TestCertificateAuthority.make()
        let verifier = DeviceIdentityVerifier(trustRoots: [otherCA.certificate], now: { fixtureTime })
        let failure = await identityFailure { () async throws(DeviceIdentityError) in
            try await verifier.verifySignature(header: header, body: body)
        }
        #expect(failure?.kind == .untrustedCertificate)
    }

    @Test func rfc5280PolicyRefusesANonCACertificateAsItsOwnTrustRoot() async throws {
        let verifier = DeviceIdentityVerifier(trustRoots: [leaf], now: { fixtureTime })
        let failure = await identityFailure { () async throws(DeviceIdentityError) in
            try await verifier.verifySignature(header: header, body: body)
        }
        #expect(failure?.kind == .untrustedCertificate)
    }

    @Test func pinnedCertificateIsUntrustedOutsideItsValidityPeriod() async throws {
        let afterExpiry = Date(timeIntervalSince1970: 1_956_528_000)  // 2032-01-01
        let verifier = DeviceIdentityVerifier(
            trustRoots: [leaf],
            now: { afterExpiry },
            chainPolicy: .rfc5280OrPinnedLeaf
        )
        let failure = await identityFailure { () async throws(DeviceIdentityError) in
            try await verifier.verifySignature(header: header, body: body)
        }
        #expect(failure?.kind == .untrustedCertificate)
    }

    private func leafPEM() throws -> String {
        try FixtureFiles.text("MdmSignature.idle.certificate.pem")
    }
}
