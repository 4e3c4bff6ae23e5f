import MDMIdentity
import Testing

/// Signatures written by OpenSSL's `cms -sign`, an implementation independent of ours.
@Suite struct OpenSSLSignatureTests {
    @Test(arguments: [
        ("openssl-p256-sha384-attributes.sig.txt", "openssl-ca-ec.pem", "openssl-device-ec.pem"),
        ("openssl-rsa-sha256-noattributes.sig.txt", "openssl-ca-rsa.pem", "openssl-device-rsa.pem"),
    ])
    func opensslSignatureVerifies(signature: String, ca: String, device: String) async throws {
        let body = try FixtureFiles.bytes("MdmSignature.idle.body.plist")
        let verifier = try DeviceIdentityVerifier(
            trustRoots: DeviceIdentityVerifier.loadCertificates(pem: FixtureFiles.text(ca)),
            now: { fixtureTime }
        )

        let identity = try await verifier.verifySignature(header: FixtureFiles.text(signature), body: body)

        let expected = try #require(CertificateText.pemCertificates(in: FixtureFiles.text(device))?.first)
        #expect(identity.der == expected)
    }

    @Test func opensslSignatureWithSignedAttributesFailsForAChangedBody() async throws {
        var body = try FixtureFiles.bytes("MdmSignature.idle.body.plist")
        body.removeLast()
        let verifier = try DeviceIdentityVerifier(
            trustRoots: DeviceIdentityVerifier.loadCertificates(pem: FixtureFiles.text("openssl-ca-ec.pem")),
            now: { fixtureTime }
        )
        let header = try FixtureFiles.text("openssl-p256-sha384-attributes.sig.txt")

        let failure = await identityFailure { () async throws(DeviceIdentityError) in
            try await verifier.verifySignature(header: header, body: body)
        }

        #expect(failure == .signatureMismatch)
    }
}
