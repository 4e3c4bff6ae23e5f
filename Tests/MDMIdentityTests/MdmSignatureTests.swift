import Foundation
import MDMIdentity
import MDMTestSupport
import Testing
import X509

@Suite struct MdmSignatureTests {
    let body = Array("<plist><dict><key>MessageType</key><string>TokenUpdate</string></dict></plist>".utf8)

    @Test(arguments: [TestKeyKind.rsa2048, .p256], [TestSignatureStyle.device, .modern])
    func signatureFromAnIssuedIdentityVerifies(keyKind: TestKeyKind, style: TestSignatureStyle) async throws {
        let ca = try TestCertificateAuthority.make()
        let device = try ca.issueDeviceIdentity(commonName: "device-1", keyKind: keyKind)
        let verifier = DeviceIdentityVerifier(trustRoots: [ca.certificate])

        let identity = try await verifier.verifySignature(
            header: device.mdmSignature(for: body, style: style),
            body: body
        )

        #expect(identity.der == device.der)
        #expect(identity.sha256 == device.sha256)
    }

    @Test func deviceStyleSignatureUsesIndefiniteLengths() throws {
        let device = try TestCertificateAuthority.make().issueDeviceIdentity(commonName: "device-1")
        let header = try device.mdmSignature(for: body, style: .device)
        let encoded = try #require(Data(base64Encoded: header))
        // SEQUENCE with the indefinite length form, closed by end-of-contents octets.
        #expect(Array(encoded.prefix(2)) == [0x30, 0x80])
        #expect(Array(encoded.suffix(2)) == [0x00, 0x00])
    }

    @Test(arguments: [TestSignatureStyle.device, .modern])
    func signatureOverABodyChangedByOneByteIsAMismatch(style: TestSignatureStyle) async throws {
        let ca = try TestCertificateAuthority.make()
        let device = try ca.issueDeviceIdentity(commonName: "device-1", keyKind: .p256)
        let verifier = DeviceIdentityVerifier(trustRoots: [ca.certificate])
        let header = try device.mdmSignature(for: body, style: style)
        var changed = body
        changed[0] ^= 0x20

        let failure = await identityFailure { () async throws(DeviceIdentityError) in
            try await verifier.verifySignature(header: header, body: changed)
        }

        #expect(failure == .signatureMismatch)
    }

    @Test func headerThatIsNotBase64IsMalformed() async throws {
        let verifier = try DeviceIdentityVerifier(trustRoots: [TestCertificateAuthority.make().certificate])
        let failure = await identityFailure { () async throws(DeviceIdentityError) in
            try await verifier.verifySignature(header: "not*base64!", body: body)
        }
        #expect(failure?.kind == .malformedHeader)
    }

    @Test func base64OfSomethingOtherThanCMSIsAMalformedSignature() async throws {
        let verifier = try DeviceIdentityVerifier(trustRoots: [TestCertificateAuthority.make().certificate])
        for junk in [Data("hello, world".utf8), Data([0x30, 0x03, 0x02, 0x01, 0x01]), Data([0x30, 0x80, 0x05])] {
            let failure = await identityFailure { () async throws(DeviceIdentityError) in
                try await verifier.verifySignature(header: junk.base64EncodedString(), body: body)
            }
            #expect(failure?.kind == .malformedSignature)
        }
    }

    @Test func emptyHeaderIsAMissingIdentity() async throws {
        let verifier = try DeviceIdentityVerifier(trustRoots: [TestCertificateAuthority.make().certificate])
        let failure = await identityFailure { () async throws(DeviceIdentityError) in
            try await verifier.verifySignature(header: " \n", body: body)
        }
        #expect(failure == .missingIdentity)
    }

    @Test func identityFromAnotherCAWithTheSameNameIsUntrusted() async throws {
        let trusted = try TestCertificateAuthority.make(commonName: "Device CA")
        let impostor = try TestCertificateAuthority.make(commonName: "Device CA")
        let device = try impostor.issueDeviceIdentity(commonName: "device-1", keyKind: .p256)
        let verifier = DeviceIdentityVerifier(trustRoots: [trusted.certificate])
        let header = try device.mdmSignature(for: body)

        let failure = await identityFailure { () async throws(DeviceIdentityError) in
            try await verifier.verifySignature(header: header, body: body)
        }

        #expect(failure?.kind == .untrustedCertificate)
    }

    @Test func expiredIdentityIsUntrusted() async throws {
        let ca = try TestCertificateAuthority.make()
        let device = try ca.issueDeviceIdentity(
            commonName: "device-1",
            keyKind: .p256,
            notValidBefore: Date() - 86400 * 30,
            notValidAfter: Date() - 86400
        )
        let verifier = DeviceIdentityVerifier(trustRoots: [ca.certificate])
        let header = try device.mdmSignature(for: body)

        let failure = await identityFailure { () async throws(DeviceIdentityError) in
            try await verifier.verifySignature(header: header, body: body)
        }

        #expect(failure?.kind == .untrustedCertificate)
    }

    @Test func identityNotYetValidIsUntrusted() async throws {
        let ca = try TestCertificateAuthority.make()
        let device = try ca.issueDeviceIdentity(commonName: "device-1", keyKind: .p256, notValidBefore: Date() + 3600)
        let verifier = DeviceIdentityVerifier(trustRoots: [ca.certificate])
        let header = try device.mdmSignature(for: body)

        let failure = await identityFailure { () async throws(DeviceIdentityError) in
            try await verifier.verifySignature(header: header, body: body)
        }

        #expect(failure?.kind == .untrustedCertificate)
    }

    @Test func identityWhoseExtendedKeyUsageIsServerAuthOnlyIsUntrusted() async throws {
        let ca = try TestCertificateAuthority.make()
        let device = try ca.issueDeviceIdentity(commonName: "device-1", keyKind: .p256, extendedKeyUsage: [.serverAuth])
        let verifier = DeviceIdentityVerifier(trustRoots: [ca.certificate])
        let header = try device.mdmSignature(for: body)

        let failure = await identityFailure { () async throws(DeviceIdentityError) in
            try await verifier.verifySignature(header: header, body: body)
        }

        #expect(failure?.kind == .untrustedCertificate)
    }

    @Test func identityWithoutExtendedKeyUsageIsTrusted() async throws {
        let ca = try TestCertificateAuthority.make()
        let device = try ca.issueDeviceIdentity(commonName: "device-1", keyKind: .p256, extendedKeyUsage: nil)
        let verifier = DeviceIdentityVerifier(trustRoots: [ca.certificate])

        let identity = try await verifier.verifySignature(header: device.mdmSignature(for: body), body: body)

        #expect(identity.der == device.der)
    }

    @Test func intermediateEmbeddedInTheSignatureCompletesTheChain() async throws {
        let root = try TestCertificateAuthority.make(commonName: "Root CA")
        let issuing = try root.issueIntermediate(commonName: "SCEP CA")
        let device = try issuing.issueDeviceIdentity(commonName: "device-1", keyKind: .p256)
        let verifier = DeviceIdentityVerifier(trustRoots: [root.certificate])

        for style in [TestSignatureStyle.device, .modern] {
            let identity = try await verifier.verifySignature(
                header: device.mdmSignature(for: body, style: style),
                body: body
            )
            #expect(identity.der == device.der)
        }
    }

    @Test func verifiedChainIsRememberedButTheSignatureIsCheckedEveryTime() async throws {
        let ca = try TestCertificateAuthority.make()
        let device = try ca.issueDeviceIdentity(commonName: "device-1", keyKind: .p256)
        let verifier = DeviceIdentityVerifier(trustRoots: [ca.certificate])
        let header = try device.mdmSignature(for: body)

        _ = try await verifier.verifySignature(header: header, body: body)
        #expect(verifier.cachedCertificateCount == 1)

        let failure = await identityFailure { () async throws(DeviceIdentityError) in
            try await verifier.verifySignature(header: header, body: body + [0x0A])
        }
        #expect(failure == .signatureMismatch)
        _ = try await verifier.verifySignature(header: device.mdmSignature(for: body, style: .device), body: body)
        #expect(verifier.cachedCertificateCount == 1)
    }

    @Test func rememberedChainExpiresWithTheCertificate() async throws {
        let ca = try TestCertificateAuthority.make()
        let device = try ca.issueDeviceIdentity(commonName: "device-1", keyKind: .p256, notValidAfter: Date() + 3600)
        let clock = TestClock(Date())
        let verifier = DeviceIdentityVerifier(trustRoots: [ca.certificate], now: { clock.now })
        let header = try device.mdmSignature(for: body)
        _ = try await verifier.verifySignature(header: header, body: body)

        clock.now = Date() + 7200
        let failure = await identityFailure { () async throws(DeviceIdentityError) in
            try await verifier.verifySignature(header: header, body: body)
        }

        #expect(failure?.kind == .untrustedCertificate)
    }

    @Test func rememberedChainsAreBounded() async throws {
        let ca = try TestCertificateAuthority.make()
        let verifier = DeviceIdentityVerifier(trustRoots: [ca.certificate], cacheCapacity: 2)
        for index in 0..<3 {
            let device = try ca.issueDeviceIdentity(commonName: "device-\(index)", keyKind: .p256)
            _ = try await verifier.verifySignature(header: device.mdmSignature(for: body), body: body)
        }
        #expect(verifier.cachedCertificateCount == 2)
    }

    @Test func identitiesFromALoadedCAVerify() async throws {
        for (certificate, key) in [
            ("openssl-ca-ec.pem", "openssl-ca-ec.key"), ("openssl-ca-rsa.pem", "openssl-ca-rsa.key"),
        ] {
            let ca = try TestCertificateAuthority(
                certificatePEM: FixtureFiles.text(certificate),
                privateKeyPEM: FixtureFiles.text(key)
            )
            let device = try ca.issueDeviceIdentity(commonName: "device-1", keyKind: .p256)
            let verifier = try DeviceIdentityVerifier(
                trustRoots: DeviceIdentityVerifier.loadCertificates(pemFile: FixtureFiles.url(certificate).path)
            )
            let identity = try await verifier.verifySignature(header: device.mdmSignature(for: body), body: body)
            #expect(identity.der == device.der)
        }
    }

    @Test func caKeyThatDoesNotMatchItsCertificateIsRefused() throws {
        #expect(throws: TestIdentityError.privateKeyDoesNotMatchCertificate) {
            try TestCertificateAuthority(
                certificatePEM: FixtureFiles.text("openssl-ca-ec.pem"),
                privateKeyPEM: FixtureFiles.text("openssl-ca-rsa.key")
            )
        }
    }
}

/// A clock tests move by hand.
final class TestClock: @unchecked Sendable {
    private let lock = NSLock()
    private var current: Date

    init(_ start: Date) {
        current = start
    }

    var now: Date {
        get { lock.withLock { current } }
        set { lock.withLock { current = newValue } }
    }
}
