import Foundation
import MDMProtocol
import MDMStorage
import MDMTestSupport
import PostgresNIO
import Testing

@Suite(.enabled(if: TestDatabase.isEnabled, "set MDM_TEST_DATABASE_URL or run deploy/local/test"))
struct EnrollmentStoreTests {
    @Test
    func authenticateCreatesDeviceAndDisabledDeviceEnrollment() async throws {
        try await TestDatabase.withFreshClient { client in
            let storage = StorageFixture(client: client)
            let device = StorageFixture.device("UDID-1")
            #expect(try await storage.authenticate(device, serialNumber: "C02ABC") == .allowed)

            let enrollment = try #require(try await storage.enrollments.fetchEnrollment(id: "UDID-1"))
            #expect(enrollment.deviceID == "UDID-1")
            #expect(enrollment.type == "Device")
            #expect(enrollment.parentID == nil)
            #expect(!enrollment.enabled)
            #expect(enrollment.tokenUpdateTally == 0)
            #expect(enrollment.tokenHex == nil)
            #expect(enrollment.pushMagic == nil)
            #expect(enrollment.lastSeenAt != nil)
            #expect(
                try await storage.count(
                    """
                    SELECT count(*) FROM devices
                    WHERE id = 'UDID-1' AND serial_number = 'C02ABC' AND authenticate IS NOT NULL
                    """
                ) == 1
            )
            let decision = try await storage.enrollments.checkBinding(
                certificateHash: StorageFixture.certificateHash(of: device),
                deviceChannelID: "UDID-1",
                retro: false
            )
            #expect(decision == .allowed)
        }
    }

    @Test
    func certificateReuseIsRefusedAndChangesNothing() async throws {
        try await TestDatabase.withFreshClient { client in
            let storage = StorageFixture(client: client)
            let first = StorageFixture.device("UDID-1")
            let second = StorageFixture.device("UDID-2")
            let shared = StorageFixture.certificateHash("shared certificate")
            try await storage.authenticate(first, certificateHash: shared)

            #expect(try await storage.authenticate(second, certificateHash: shared) == .boundToAnotherDevice)
            #expect(try await storage.enrollments.fetchEnrollment(id: "UDID-2") == nil)
            #expect(try await storage.count("SELECT count(*) FROM devices WHERE id = 'UDID-2'") == 0)
            #expect(try await storage.count("SELECT count(*) FROM certificate_bindings") == 1)
            let decision = try await storage.enrollments.checkBinding(
                certificateHash: shared,
                deviceChannelID: "UDID-2",
                retro: true
            )
            #expect(decision == .boundToAnotherDevice)
        }
    }

    @Test
    func reusedCertificateLeavesAnExistingDeviceUntouched() async throws {
        try await TestDatabase.withFreshClient { client in
            let storage = StorageFixture(client: client)
            let victim = try await storage.enrollDevice("UDID-1")
            let other = try await storage.enrollDevice("UDID-2")
            try await storage.enqueue("CMD-1", to: [other])
            try await storage.enrollments.saveBootstrapToken(deviceID: "UDID-2", token: Data([1, 2, 3]))

            let victimCertificate = StorageFixture.certificateHash(of: victim)
            #expect(try await storage.authenticate(other, certificateHash: victimCertificate) == .boundToAnotherDevice)

            let enrollment = try #require(try await storage.enrollments.fetchEnrollment(id: "UDID-2"))
            #expect(enrollment.enabled)
            #expect(enrollment.tokenUpdateTally == 1)
            #expect(try await storage.queueState(other, "CMD-1") == "pending")
            #expect(try await storage.enrollments.fetchBootstrapToken(deviceID: "UDID-2") == Data([1, 2, 3]))
        }
    }

    @Test
    func deviceMayHoldSeveralCertificates() async throws {
        try await TestDatabase.withFreshClient { client in
            let storage = StorageFixture(client: client)
            let device = StorageFixture.device("UDID-1")
            let old = StorageFixture.certificateHash("old")
            let new = StorageFixture.certificateHash("new")
            try await storage.authenticate(device, certificateHash: old)
            #expect(try await storage.authenticate(device, certificateHash: new) == .allowed)
            for hash in [old, new] {
                let decision = try await storage.enrollments.checkBinding(
                    certificateHash: hash,
                    deviceChannelID: "UDID-1",
                    retro: false
                )
                #expect(decision == .allowed)
            }
        }
    }

    @Test
    func tokenUpdateEnablesEnrollmentAndIncrementsTally() async throws {
        try await TestDatabase.withFreshClient { client in
            let storage = StorageFixture(client: client)
            let device = StorageFixture.device("UDID-1")
            try await storage.authenticate(device)
            let unlockToken = Data([0x00, 0xFF, 0x10])
            #expect(try await storage.tokenUpdate(device, token: Data([0xAB, 0x0C]), unlockToken: unlockToken) == 1)

            let enrollment = try #require(try await storage.enrollments.fetchEnrollment(id: "UDID-1"))
            #expect(enrollment.enabled)
            #expect(enrollment.tokenUpdateTally == 1)
            #expect(enrollment.tokenHex == "ab0c")
            #expect(enrollment.pushMagic == "magic-UDID-1")
            #expect(enrollment.topic == "com.apple.mgmt.External.test")
            let stored = try await storage.value("SELECT unlock_token FROM devices WHERE id = 'UDID-1'", as: Data.self)
            #expect(stored == unlockToken)

            #expect(try await storage.tokenUpdate(device) == 2)
        }
    }

    @Test
    func tokenUpdateFromUnknownDeviceThrows() async throws {
        try await TestDatabase.withFreshClient { client in
            let storage = StorageFixture(client: client)
            await #expect(throws: StorageError.unknownDevice("UDID-9")) {
                _ = try await storage.tokenUpdate(StorageFixture.user("501", of: "UDID-9"))
            }
            let enrollments = try await storage.count("SELECT count(*) FROM enrollments")
            #expect(enrollments == 0)
        }
    }

    @Test
    func userChannelTokenUpdateCreatesUserEnrollment() async throws {
        try await TestDatabase.withFreshClient { client in
            let storage = StorageFixture(client: client)
            try await storage.authenticate(StorageFixture.device("UDID-1"))
            let user = StorageFixture.user("501", of: "UDID-1")
            #expect(try await storage.tokenUpdate(user, unlockToken: Data([9]), userShortName: "alice") == 1)

            let enrollment = try #require(try await storage.enrollments.fetchEnrollment(id: "UDID-1:501"))
            #expect(enrollment.deviceID == "UDID-1")
            #expect(enrollment.parentID == "UDID-1")
            #expect(enrollment.type == "User")
            #expect(enrollment.enabled)
            #expect(
                try await storage.count(
                    """
                    SELECT count(*) FROM enrollments
                    WHERE id = 'UDID-1:501' AND user_id = '501' AND user_short_name = 'alice'
                        AND user_long_name = 'alice Long' AND token_update IS NOT NULL
                    """
                ) == 1
            )
            // The unlock token belongs to the device channel only.
            #expect(try await storage.count("SELECT count(*) FROM devices WHERE unlock_token IS NOT NULL") == 0)
            let device = try #require(try await storage.enrollments.fetchEnrollment(id: "UDID-1"))
            #expect(!device.enabled)
        }
    }

    @Test
    func userEnrollmentDeviceChannelIsKeyedByEnrollmentID() async throws {
        try await TestDatabase.withFreshClient { client in
            let storage = StorageFixture(client: client)
            let device = EnrollmentIdentity(id: "ENROLLMENT-1", type: .userEnrollmentDevice)
            let user = EnrollmentIdentity(id: "ENROLLMENT-1:USER-1", type: .userEnrollment, parentID: "ENROLLMENT-1")
            try await storage.authenticate(device)
            try await storage.tokenUpdate(device)
            try await storage.tokenUpdate(user)
            #expect(try await storage.count("SELECT count(*) FROM devices WHERE id = 'ENROLLMENT-1'") == 1)
            let enrollment = try #require(try await storage.enrollments.fetchEnrollment(id: "ENROLLMENT-1:USER-1"))
            #expect(enrollment.deviceID == "ENROLLMENT-1")
            #expect(enrollment.type == "User Enrollment")
            #expect(
                try await storage.enrollments.fetchEnrollment(id: "ENROLLMENT-1")?.type == "User Enrollment (Device)")
        }
    }

    @Test
    func reAuthenticateResetsTallyAndDeactivatesDeviceAndUserQueues() async throws {
        try await TestDatabase.withFreshClient { client in
            let storage = StorageFixture(client: client)
            let device = try await storage.enrollDevice("UDID-1")
            let user = StorageFixture.user("501", of: "UDID-1")
            try await storage.tokenUpdate(user)
            try await storage.tokenUpdate(device)
            try await storage.enqueue("CMD-DEVICE", to: [device])
            try await storage.enqueue("CMD-USER", to: [user])
            try await storage.enqueue("CMD-NOTNOW", to: [device])
            #expect(try await storage.next(device) == "CMD-DEVICE")
            #expect(try await storage.next(device, status: "NotNow", commandUUID: "CMD-DEVICE") == "CMD-NOTNOW")

            try await storage.authenticate(device)

            for id in ["UDID-1", "UDID-1:501"] {
                let enrollment = try #require(try await storage.enrollments.fetchEnrollment(id: id))
                #expect(!enrollment.enabled)
                #expect(enrollment.tokenUpdateTally == 0)
            }
            #expect(try await storage.queueState(device, "CMD-DEVICE") == "inactive")
            #expect(try await storage.queueState(device, "CMD-NOTNOW") == "inactive")
            #expect(try await storage.queueState(user, "CMD-USER") == "inactive")
            #expect(try await storage.next(device) == nil)
            #expect(try await storage.next(user) == nil)

            #expect(try await storage.tokenUpdate(device) == 1)
            #expect(try await storage.tokenUpdate(user) == 1)
        }
    }

    @Test
    func reAuthenticateKeepsResultsAndHistory() async throws {
        try await TestDatabase.withFreshClient { client in
            let storage = StorageFixture(client: client)
            let device = try await storage.enrollDevice("UDID-1")
            try await storage.enqueue("CMD-1", to: [device])
            #expect(try await storage.drain(device) == ["CMD-1"])
            try await storage.authenticate(device)
            #expect(try await storage.count("SELECT count(*) FROM command_results") == 1)
            #expect(try await storage.queueState(device, "CMD-1") == "done")
        }
    }

    @Test
    func checkOutDisablesEnrollmentAndKeepsQueue() async throws {
        try await TestDatabase.withFreshClient { client in
            let storage = StorageFixture(client: client)
            let device = try await storage.enrollDevice("UDID-1")
            try await storage.enqueue("CMD-1", to: [device])
            try await storage.enrollments.checkOut(enrollmentID: "UDID-1")
            try await storage.enrollments.checkOut(enrollmentID: "UNKNOWN")

            let enrollment = try #require(try await storage.enrollments.fetchEnrollment(id: "UDID-1"))
            #expect(!enrollment.enabled)
            #expect(try await storage.queueState(device, "CMD-1") == "pending")
        }
    }

    @Test
    func bootstrapTokenIsStoredFetchedAndClearedByAuthenticate() async throws {
        try await TestDatabase.withFreshClient { client in
            let storage = StorageFixture(client: client)
            let device = try await storage.enrollDevice("UDID-1")
            let token = Data((0...255).map { UInt8($0) })
            #expect(try await storage.enrollments.fetchBootstrapToken(deviceID: "UDID-1") == nil)
            try await storage.enrollments.saveBootstrapToken(deviceID: "UDID-1", token: token)
            #expect(try await storage.enrollments.fetchBootstrapToken(deviceID: "UDID-1") == token)

            try await storage.authenticate(device)
            #expect(try await storage.enrollments.fetchBootstrapToken(deviceID: "UDID-1") == nil)
        }
    }

    @Test(arguments: [nil, Data()])
    func missingOrEmptyBootstrapTokenDeletesIt(token: Data?) async throws {
        try await TestDatabase.withFreshClient { client in
            let storage = StorageFixture(client: client)
            _ = try await storage.enrollDevice("UDID-1")
            try await storage.enrollments.saveBootstrapToken(deviceID: "UDID-1", token: Data([1]))
            try await storage.enrollments.saveBootstrapToken(deviceID: "UDID-1", token: token)
            #expect(try await storage.enrollments.fetchBootstrapToken(deviceID: "UDID-1") == nil)
            #expect(try await storage.count("SELECT count(*) FROM devices WHERE bootstrap_token_at IS NULL") == 1)
        }
    }

    @Test
    func markSeenMovesLastSeen() async throws {
        try await TestDatabase.withFreshClient { client in
            let storage = StorageFixture(client: client)
            _ = try await storage.enrollDevice("UDID-1")
            try await client.query("UPDATE enrollments SET last_seen_at = '2020-01-01Z'")
            try await storage.enrollments.markSeen(enrollmentID: "UDID-1")
            let enrollment = try #require(try await storage.enrollments.fetchEnrollment(id: "UDID-1"))
            #expect(try #require(enrollment.lastSeenAt) > Date(timeIntervalSince1970: 1_600_000_000))
            #expect(try await storage.enrollments.fetchEnrollment(id: "UNKNOWN") == nil)
        }
    }

    @Test
    func retroBindingBindsOnFirstSightOnly() async throws {
        try await TestDatabase.withFreshClient { client in
            let storage = StorageFixture(client: client)
            // A migrated device: known, but never authenticated with an identity here.
            try await client.query("INSERT INTO devices (id) VALUES ('MIGRATED')")
            let first = StorageFixture.certificateHash("first")
            let second = StorageFixture.certificateHash("second")
            let check = { (hash: [UInt8], device: String, retro: Bool) in
                try await storage.enrollments.checkBinding(certificateHash: hash, deviceChannelID: device, retro: retro)
            }

            #expect(try await check(first, "MIGRATED", false) == .notBound)
            #expect(try await check(first, "MIGRATED", true) == .allowed)
            #expect(try await check(first, "MIGRATED", false) == .allowed)
            // The device now has a binding, so a second certificate is not bound on sight.
            #expect(try await check(second, "MIGRATED", true) == .notBound)
            // No device row: nothing to bind to.
            #expect(try await check(second, "NEVER-SEEN", true) == .notBound)
        }
    }
}
