import Foundation
import MDMStorage
import MDMTestSupport
import Testing

@Suite(.enabled(if: TestDatabase.isEnabled, "set MDM_TEST_DATABASE_URL or run deploy/local/test"))
struct PushCertificateStoreTests {
    @Test
    func pushCertificateIsSavedReplacedAndFetched() async throws {
        try await TestDatabase.withFreshClient { client in
            let store = PostgresPushCertificateStore(client: client, logger: TestDatabase.quietLogger)
            let topic = "com.apple.mgmt.External.test"
            #expect(try await store.fetchPushCertificate(topic: topic) == nil)

            let first = PushCertificateRecord(
                topic: topic,
                certificatePEM: "-----BEGIN CERTIFICATE-----\nfirst\n-----END CERTIFICATE-----\n",
                privateKeyPEM: "-----BEGIN PRIVATE KEY-----\nfirst\n-----END PRIVATE KEY-----\n",
                notAfter: Date(timeIntervalSince1970: 1_900_000_000)
            )
            try await store.savePushCertificate(first)
            #expect(try await store.fetchPushCertificate(topic: topic) == first)

            let renewed = PushCertificateRecord(
                topic: topic,
                certificatePEM: "-----BEGIN CERTIFICATE-----\nrenewed\n-----END CERTIFICATE-----\n",
                privateKeyPEM: "-----BEGIN PRIVATE KEY-----\nrenewed\n-----END PRIVATE KEY-----\n",
                notAfter: Date(timeIntervalSince1970: 1_950_000_000)
            )
            try await store.savePushCertificate(renewed)
            #expect(try await store.fetchPushCertificate(topic: topic) == renewed)
            #expect(try await store.fetchPushCertificate(topic: "com.apple.mgmt.other") == nil)
        }
    }
}
