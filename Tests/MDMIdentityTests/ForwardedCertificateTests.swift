import Foundation
import MDMIdentity
import MDMTestSupport
import Testing
import X509

@Suite struct ForwardedCertificateTests {
    enum HeaderForm: CaseIterable {
        case rfc9440
        case escapedPEM
        case plainPEM
        case pemOnOneLine
        case bareBase64

        func header(for device: TestDeviceIdentity) -> String {
            switch self {
            case .rfc9440: device.rfc9440Header
            case .escapedPEM: device.escapedPEMHeader
            case .plainPEM: device.certificatePEM
            // Some proxies fold the PEM's line breaks into spaces.
            case .pemOnOneLine: device.certificatePEM.replacingOccurrences(of: "\n", with: " ")
            case .bareBase64: Data(device.der).base64EncodedString()
            }
        }
    }

    @Test(arguments: HeaderForm.allCases)
    func forwardedCertificateVerifies(form: HeaderForm) async throws {
        let ca = try TestCertificateAuthority.make()
        let device = try ca.issueDeviceIdentity(commonName: "device-1", keyKind: .p256)
        let verifier = DeviceIdentityVerifier(trustRoots: [ca.certificate])

        let identity = try await verifier.verifyForwardedCertificate(header: form.header(for: device))

        #expect(identity.der == device.der)
        #expect(identity.sha256 == device.sha256)
    }

    @Test func escapedPEMHeaderLooksLikeNginxOutput() throws {
        let device = try TestCertificateAuthority.make().issueDeviceIdentity(commonName: "device-1", keyKind: .p256)
        #expect(device.escapedPEMHeader.hasPrefix("-----BEGIN%20CERTIFICATE-----%0A"))
        #expect(!device.escapedPEMHeader.contains("\n"))
        #expect(!device.escapedPEMHeader.contains("/"))
        #expect(!device.escapedPEMHeader.contains("+"))
    }

    @Test func emptyForwardedHeaderIsAMissingIdentity() async throws {
        let verifier = try DeviceIdentityVerifier(trustRoots: [TestCertificateAuthority.make().certificate])
        let failure = await identityFailure { () async throws(DeviceIdentityError) in
            try await verifier.verifyForwardedCertificate(header: "")
        }
        #expect(failure == .missingIdentity)
    }

    @Test(arguments: [":not base64!:", "%ZZ", "-----BEGIN CERTIFICATE-----\nAAAA", "::", "hello world"])
    func malformedForwardedHeaderIsRefused(header: String) async throws {
        let verifier = try DeviceIdentityVerifier(trustRoots: [TestCertificateAuthority.make().certificate])
        let failure = await identityFailure { () async throws(DeviceIdentityError) in
            try await verifier.verifyForwardedCertificate(header: header)
        }
        #expect(failure?.kind == .malformedHeader)
    }

    @Test func forwardedCertificateFromAnotherCAIsUntrusted() async throws {
        let trusted = try TestCertificateAuthority.make()
        let device = try TestCertificateAuthority.make().issueDeviceIdentity(commonName: "device-1", keyKind: .p256)
        let verifier = DeviceIdentityVerifier(trustRoots: [trusted.certificate])

        let failure = await identityFailure { () async throws(DeviceIdentityError) in
            try await verifier.verifyForwardedCertificate(header: device.rfc9440Header)
        }

        #expect(failure?.kind == .untrustedCertificate)
    }

    @Test func configuredIntermediateCompletesAForwardedChain() async throws {
        let root = try TestCertificateAuthority.make(commonName: "Root CA")
        let issuing = try root.issueIntermediate(commonName: "SCEP CA")
        let device = try issuing.issueDeviceIdentity(commonName: "device-1", keyKind: .p256)
        let withIntermediate = DeviceIdentityVerifier(
            trustRoots: [root.certificate], intermediates: [issuing.certificate])
        let withoutIntermediate = DeviceIdentityVerifier(trustRoots: [root.certificate])

        let identity = try await withIntermediate.verifyForwardedCertificate(header: device.rfc9440Header)
        let failure = await identityFailure { () async throws(DeviceIdentityError) in
            try await withoutIntermediate.verifyForwardedCertificate(header: device.rfc9440Header)
        }

        #expect(identity.der == device.der)
        #expect(failure?.kind == .untrustedCertificate)
    }

    @Test func expiredPushCertificateIsUntrustedEvenWhenPinned() async throws {
        let pem = try FixtureFiles.text("push-cert-expired.pem")
        let certificate = try #require(DeviceIdentityVerifier.loadCertificates(pem: pem).first)
        let pinned = DeviceIdentityVerifier(trustRoots: [certificate], chainPolicy: .rfc5280OrPinnedLeaf)
        let whileValid = DeviceIdentityVerifier(
            trustRoots: [certificate],
            now: { Date(timeIntervalSince1970: 1_625_097_600) },  // 2021-07-01
            chainPolicy: .rfc5280OrPinnedLeaf
        )

        let failure = await identityFailure { () async throws(DeviceIdentityError) in
            try await pinned.verifyForwardedCertificate(header: pem)
        }
        let identity = try await whileValid.verifyForwardedCertificate(header: pem)

        #expect(failure?.kind == .untrustedCertificate)
        #expect(identity.der == CertificateText.pemCertificates(in: pem)?.first)
    }
}
