import Foundation
import MDMIdentity
import MDMTestSupport
import Testing

@Suite struct CertificateTextTests {
    @Test func base64DecodingIgnoresWhitespaceAndMissingPadding() {
        #expect(CertificateText.base64Decoded("aGVs\r\n bG8\tgd29y\nbGQ") == Array("hello world".utf8))
        #expect(CertificateText.base64Decoded("aGVsbG8=") == Array("hello".utf8))
    }

    @Test func base64DecodingRefusesOtherCharactersAndEmptyInput() {
        #expect(CertificateText.base64Decoded("aGVs*bG8=") == nil)
        #expect(CertificateText.base64Decoded(" \n") == nil)
        #expect(CertificateText.base64Decoded("aGVsb") == nil)
    }

    @Test func pemBundleLoadsEveryCertificateAndSkipsTextBetweenBlocks() throws {
        let first = try TestCertificateAuthority.make(commonName: "First")
        let second = try TestCertificateAuthority.make(commonName: "Second", keyKind: .rsa2048)
        let bundle = "subject=CN=First\n" + first.certificatePEM + "\n# second\n" + second.certificatePEM

        let certificates = try DeviceIdentityVerifier.loadCertificates(pem: bundle)

        #expect(certificates == [first.certificate, second.certificate])
    }

    @Test func pemWithoutCertificatesIsRefused() {
        #expect(throws: CertificateBundleError.noCertificates) {
            try DeviceIdentityVerifier.loadCertificates(
                pem: "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
        }
        #expect(throws: CertificateBundleError.invalidPEM) {
            try DeviceIdentityVerifier.loadCertificates(pem: "-----BEGIN CERTIFICATE-----\nAAAA\n")
        }
    }

    @Test func pemBlockThatIsNotACertificateIsRefused() {
        let pem = "-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n"
        #expect {
            try DeviceIdentityVerifier.loadCertificates(pem: pem)
        } throws: { error in
            guard case .invalidCertificate(index: 0, _) = error as? CertificateBundleError else {
                return false
            }
            return true
        }
    }

    @Test func missingPEMFileIsUnreadable() {
        #expect {
            try DeviceIdentityVerifier.loadCertificates(pemFile: "/nonexistent/ca.pem")
        } throws: { error in
            guard case .unreadable(path: "/nonexistent/ca.pem", _) = error as? CertificateBundleError else {
                return false
            }
            return true
        }
    }

    @Test func testIdentityHashIsTheDeviceIdentityHash() throws {
        let device = try TestCertificateAuthority.make().issueDeviceIdentity(commonName: "device-1", keyKind: .p256)
        #expect(device.sha256 == DeviceIdentity(der: device.der).sha256)
        #expect(DeviceIdentity(der: device.der).sha256Hex.count == 64)
    }
}
