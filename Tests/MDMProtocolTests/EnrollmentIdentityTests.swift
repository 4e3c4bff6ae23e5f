import Testing

@testable import MDMProtocol

@Suite("Enrollment identity resolution (PROTOCOL.md §2)")
struct EnrollmentIdentityTests {
    @Test func udidAloneIsTheDeviceChannel() throws {
        let identity = try EnrollmentKeys(udid: "UDID-1").resolve()
        #expect(identity == EnrollmentIdentity(id: "UDID-1", type: .device))
        #expect(identity.deviceChannelID == "UDID-1")
    }

    @Test func udidWithUserIDIsAUserChannelUnderTheDevice() throws {
        let identity = try EnrollmentKeys(udid: "UDID-1", userID: "USER-9").resolve()
        #expect(identity == EnrollmentIdentity(id: "UDID-1:USER-9", type: .user, parentID: "UDID-1"))
        #expect(identity.deviceChannelID == "UDID-1")
    }

    @Test func sharedIPadUserIsKeyedByShortName() throws {
        let identity = try EnrollmentKeys(
            udid: "UDID-1",
            userID: EnrollmentKeys.sharedIPadUserID,
            userShortName: "student7"
        ).resolve()
        #expect(identity == EnrollmentIdentity(id: "UDID-1:student7", type: .sharedIPad, parentID: "UDID-1"))
    }

    @Test func sharedIPadWithoutShortNameIsRefused() {
        #expect(throws: MDMProtocolError.missingKey("UserShortName")) {
            try EnrollmentKeys(udid: "UDID-1", userID: EnrollmentKeys.sharedIPadUserID).resolve()
        }
    }

    @Test func enrollmentIDAloneIsAUserEnrollmentDeviceChannel() throws {
        let identity = try EnrollmentKeys(enrollmentID: "ENR-1").resolve()
        #expect(identity == EnrollmentIdentity(id: "ENR-1", type: .userEnrollmentDevice))
    }

    @Test func enrollmentUserIDMakesAUserEnrollmentChannel() throws {
        let identity = try EnrollmentKeys(enrollmentID: "ENR-1", enrollmentUserID: "EU-2").resolve()
        #expect(identity == EnrollmentIdentity(id: "ENR-1:EU-2", type: .userEnrollment, parentID: "ENR-1"))
    }

    @Test func udidWinsOverEnrollmentID() throws {
        let identity = try EnrollmentKeys(udid: "UDID-1", enrollmentID: "ENR-1").resolve()
        #expect(identity.id == "UDID-1")
        #expect(identity.type == .device)
    }

    @Test func neitherIdentifierIsRefused() {
        #expect(throws: MDMProtocolError.missingEnrollmentID) { try EnrollmentKeys().resolve() }
        #expect(throws: MDMProtocolError.missingEnrollmentID) { try EnrollmentKeys(udid: "").resolve() }
    }

    @Test func idsAreUsedVerbatimWithoutCaseFolding() throws {
        let identity = try EnrollmentKeys(udid: "AbC-dEf", userID: "uSeR").resolve()
        #expect(identity.id == "AbC-dEf:uSeR")
    }

    @Test func storedTypeStringsMatchNanoMDM() {
        #expect(
            EnrollmentType.allCases.map(\.rawValue) == [
                "Device", "User", "Shared iPad", "User Enrollment (Device)", "User Enrollment",
            ])
        #expect(EnrollmentType.allCases.filter(\.isUserChannel) == [.user, .sharedIPad, .userEnrollment])
    }
}
