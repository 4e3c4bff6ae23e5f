/// The kinds of enrollment channel, spelled as NanoMDM stores them.
package enum EnrollmentType: String, Sendable, Hashable, CaseIterable {
    case device = "Device"
    case user = "User"
    case sharedIPad = "Shared iPad"
    case userEnrollmentDevice = "User Enrollment (Device)"
    case userEnrollment = "User Enrollment"

    /// Whether this is a user channel (its queue is separate from the device channel's).
    package var isUserChannel: Bool {
        switch self {
        case .device, .userEnrollmentDevice: false
        case .user, .sharedIPad, .userEnrollment: true
        }
    }
}

/// Who a message is from: the enrollment (command queue) it addresses and, for user channels,
/// the device channel it belongs to.
package struct EnrollmentIdentity: Sendable, Hashable {
    /// The enrollment ID: the key of the enrollment's command queue.
    package var id: String
    package var type: EnrollmentType
    /// The device-channel enrollment ID, for user channels.
    package var parentID: String?

    package init(id: String, type: EnrollmentType, parentID: String? = nil) {
        self.id = id
        self.type = type
        self.parentID = parentID
    }

    /// The device-channel enrollment ID: identity certificates are bound to it.
    package var deviceChannelID: String { parentID ?? id }
}

/// The identifying keys every check-in message and command report carries.
package struct EnrollmentKeys: Sendable, Hashable, Decodable {
    package var udid: String?
    package var userID: String?
    package var userShortName: String?
    package var userLongName: String?
    package var enrollmentID: String?
    package var enrollmentUserID: String?

    package init(
        udid: String? = nil,
        userID: String? = nil,
        userShortName: String? = nil,
        userLongName: String? = nil,
        enrollmentID: String? = nil,
        enrollmentUserID: String? = nil
    ) {
        self.udid = udid
        self.userID = userID
        self.userShortName = userShortName
        self.userLongName = userLongName
        self.enrollmentID = enrollmentID
        self.enrollmentUserID = enrollmentUserID
    }

    enum CodingKeys: String, CodingKey {
        case udid = "UDID"
        case userID = "UserID"
        case userShortName = "UserShortName"
        case userLongName = "UserLongName"
        case enrollmentID = "EnrollmentID"
        case enrollmentUserID = "EnrollmentUserID"
    }

    /// The user ID Apple sends for the user channel of a Shared iPad.
    package static let sharedIPadUserID = "FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF"

    /// Resolves the enrollment these keys address (PROTOCOL.md §2). `UDID` wins over
    /// `EnrollmentID`; IDs are used verbatim.
    package func resolve() throws(MDMProtocolError) -> EnrollmentIdentity {
        if let udid = nonEmpty(udid) {
            guard let userID = nonEmpty(userID) else {
                return EnrollmentIdentity(id: udid, type: .device)
            }
            if userID == Self.sharedIPadUserID {
                guard let shortName = nonEmpty(userShortName) else {
                    throw .missingKey("UserShortName")
                }
                return EnrollmentIdentity(id: "\(udid):\(shortName)", type: .sharedIPad, parentID: udid)
            }
            return EnrollmentIdentity(id: "\(udid):\(userID)", type: .user, parentID: udid)
        }
        if let enrollmentID = nonEmpty(enrollmentID) {
            guard let userID = nonEmpty(enrollmentUserID) else {
                return EnrollmentIdentity(id: enrollmentID, type: .userEnrollmentDevice)
            }
            return EnrollmentIdentity(id: "\(enrollmentID):\(userID)", type: .userEnrollment, parentID: enrollmentID)
        }
        throw .missingEnrollmentID
    }

    private func nonEmpty(_ value: String?) -> String? {
        guard let value, !value.isEmpty else { return nil }
        return value
    }
}
