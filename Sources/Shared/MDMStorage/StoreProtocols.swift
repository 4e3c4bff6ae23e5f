import Foundation
import MDMProtocol
import NIOCore

// The storage contract the roles are written against. All SQL and every transaction lives in
// the PostgreSQL implementations (`Postgres…`); handlers see only these protocols.

/// Outcome of checking a device identity certificate against the bindings (PROTOCOL.md §2).
package enum BindingDecision: Sendable, Equatable {
    case allowed
    /// The certificate hash is bound to a different device ("cert re-use").
    case boundToAnotherDevice
    /// The certificate hash is not bound to this device-channel ID (and `retro` did not apply).
    case notBound
}

/// An `Authenticate` check-in, ready to store.
package struct AuthenticateRecord: Sendable {
    /// The device-channel enrollment (`Device` or `User Enrollment (Device)`).
    package var enrollment: EnrollmentIdentity
    package var serialNumber: String?
    package var topic: String?
    /// SHA-256 of the identity certificate's DER.
    package var certificateHash: [UInt8]
    /// DER of the identity certificate.
    package var certificate: [UInt8]
    /// The request body, verbatim.
    package var rawMessage: Data
    /// Recorded with the change when the certificate is accepted.
    package var webhookEvent: WebhookEventRecord?

    package init(
        enrollment: EnrollmentIdentity,
        serialNumber: String?,
        topic: String?,
        certificateHash: [UInt8],
        certificate: [UInt8],
        rawMessage: Data,
        webhookEvent: WebhookEventRecord? = nil
    ) {
        self.enrollment = enrollment
        self.serialNumber = serialNumber
        self.topic = topic
        self.certificateHash = certificateHash
        self.certificate = certificate
        self.rawMessage = rawMessage
        self.webhookEvent = webhookEvent
    }
}

/// A `TokenUpdate` check-in, ready to store.
package struct TokenUpdateRecord: Sendable {
    package var enrollment: EnrollmentIdentity
    package var topic: String
    package var pushMagic: String
    /// The APNs token as sent (stored as lowercase hex).
    package var token: Data
    /// Device channel only.
    package var unlockToken: Data?
    package var userShortName: String?
    package var userLongName: String?
    package var rawMessage: Data
    /// Recorded with the change; its tally slot gets the new tally.
    package var webhookEvent: WebhookEventRecord?

    package init(
        enrollment: EnrollmentIdentity,
        topic: String,
        pushMagic: String,
        token: Data,
        unlockToken: Data?,
        userShortName: String?,
        userLongName: String?,
        rawMessage: Data,
        webhookEvent: WebhookEventRecord? = nil
    ) {
        self.enrollment = enrollment
        self.topic = topic
        self.pushMagic = pushMagic
        self.token = token
        self.unlockToken = unlockToken
        self.userShortName = userShortName
        self.userLongName = userLongName
        self.rawMessage = rawMessage
        self.webhookEvent = webhookEvent
    }
}

extension TokenUpdateRecord {
    /// The record of `message`, a `TokenUpdate` that arrived as `checkin`: user channels never
    /// carry an unlock token.
    package init(_ message: TokenUpdate, checkin: CheckinRequest, webhookEvent: WebhookEventRecord? = nil) {
        self.init(
            enrollment: checkin.enrollment,
            topic: message.topic,
            pushMagic: message.pushMagic,
            token: message.token,
            unlockToken: checkin.enrollment.type.isUserChannel ? nil : message.unlockToken,
            userShortName: checkin.keys.userShortName,
            userLongName: checkin.keys.userLongName,
            rawMessage: checkin.raw,
            webhookEvent: webhookEvent
        )
    }
}

/// An enrollment as stored.
package struct EnrollmentRecord: Sendable, Equatable {
    package var id: String
    package var deviceID: String
    package var type: String
    package var parentID: String?
    package var topic: String?
    package var pushMagic: String?
    package var tokenHex: String?
    package var enabled: Bool
    package var tokenUpdateTally: Int
    package var lastSeenAt: Date?

    package init(
        id: String,
        deviceID: String,
        type: String,
        parentID: String?,
        topic: String?,
        pushMagic: String?,
        tokenHex: String?,
        enabled: Bool,
        tokenUpdateTally: Int,
        lastSeenAt: Date?
    ) {
        self.id = id
        self.deviceID = deviceID
        self.type = type
        self.parentID = parentID
        self.topic = topic
        self.pushMagic = pushMagic
        self.tokenHex = tokenHex
        self.enabled = enabled
        self.tokenUpdateTally = tokenUpdateTally
        self.lastSeenAt = lastSeenAt
    }
}

/// Check-in state: devices, enrollments, identity bindings, bootstrap tokens.
package protocol EnrollmentStore: Sendable {
    /// Applies an `Authenticate` in one transaction: binds the certificate hash to the device
    /// (refusing a hash bound to another device — then nothing else changes), upserts the
    /// device (serial, raw message, certificate), clears its bootstrap token, deactivates every
    /// pending and NotNow queue entry of the device and of its user channels, disables all its
    /// enrollments and resets their TokenUpdate tally to 0, and creates the device-channel
    /// enrollment (disabled, no push info) if it does not exist. Moves `last_seen_at`.
    func authenticate(_ record: AuthenticateRecord) async throws -> BindingDecision

    /// Checks that `certificateHash` is bound to `deviceChannelID`. With `retro`, binds it when
    /// neither the ID nor the hash has any binding yet.
    func checkBinding(certificateHash: [UInt8], deviceChannelID: String, retro: Bool) async throws -> BindingDecision

    /// Applies a `TokenUpdate`: stores push info (and the unlock token on the device channel),
    /// creates or updates the enrollment, enables it and increments its tally. User channels
    /// also create/update the user row. Throws `StorageError.unknownDevice` when the device has
    /// never authenticated. Returns the new tally.
    func saveTokenUpdate(_ record: TokenUpdateRecord) async throws -> Int

    /// Disables the enrollment (its queue is kept). Unknown IDs are ignored (the event is
    /// still recorded).
    func checkOut(enrollmentID: String, webhookEvent: WebhookEventRecord?) async throws

    /// Stores the device's bootstrap token; `nil` or empty deletes it.
    func saveBootstrapToken(deviceID: String, token: Data?, webhookEvent: WebhookEventRecord?) async throws

    func fetchBootstrapToken(deviceID: String) async throws -> Data?

    /// Moves `last_seen_at` of the enrollment, recording `webhookEvent` in the same statement.
    func markSeen(enrollmentID: String, webhookEvent: WebhookEventRecord?) async throws

    func fetchEnrollment(id: String) async throws -> EnrollmentRecord?
    /// The device channel a certificate hash is bound to, if any.
    func fetchBoundDevice(certificateHash: [UInt8]) async throws -> String?
    /// An `Authenticate` replayed from another server (`PUT /migration`): the device and its
    /// channel as `authenticate` stores them, but no certificate binding (there is no
    /// certificate; `retro` binds it on the device's first request).
    func saveMigratedAuthenticate(_ record: MigratedAuthenticate) async throws
}

/// An `Authenticate` check-in replayed by a migration tool, without the device's certificate.
package struct MigratedAuthenticate: Sendable {
    package var enrollment: EnrollmentIdentity
    package var serialNumber: String?
    package var topic: String?
    package var rawMessage: Data

    package init(enrollment: EnrollmentIdentity, serialNumber: String?, topic: String?, rawMessage: Data) {
        self.enrollment = enrollment
        self.serialNumber = serialNumber
        self.topic = topic
        self.rawMessage = rawMessage
    }
}

/// The same calls without a webhook event.
extension EnrollmentStore {
    package func checkOut(enrollmentID: String) async throws {
        try await checkOut(enrollmentID: enrollmentID, webhookEvent: nil)
    }

    package func saveBootstrapToken(deviceID: String, token: Data?) async throws {
        try await saveBootstrapToken(deviceID: deviceID, token: token, webhookEvent: nil)
    }

    package func markSeen(enrollmentID: String) async throws {
        try await markSeen(enrollmentID: enrollmentID, webhookEvent: nil)
    }
}

/// A command to enqueue. `plist` is stored and returned byte for byte.
package struct NewCommand: Sendable {
    package var commandUUID: String
    package var requestType: String
    package var plist: Data
    /// Higher first; equal priorities are delivered in enqueue order.
    package var priority: Int16

    package init(commandUUID: String, requestType: String, plist: Data, priority: Int16 = 0) {
        self.commandUUID = commandUUID
        self.requestType = requestType
        self.plist = plist
        self.priority = priority
    }
}

/// What an enqueue did, per target.
package struct EnqueueOutcome: Sendable, Equatable {
    /// Targets that got a queue entry, in the order given.
    package var queued: [String]
    /// Targets with no enrollment, in the order given.
    package var unknown: [String]

    package init(queued: [String], unknown: [String]) {
        self.queued = queued
        self.unknown = unknown
    }
}

/// One report from a device on `/mdm`, with the identity that signed it.
package struct CommandPoll: Sendable {
    package var enrollmentID: String
    package var deviceChannelID: String
    package var certificateHash: [UInt8]
    /// `Idle`, `NotNow`, or a final status (`Acknowledged`, `Error`, `CommandFormatError`, …).
    package var status: String
    package var commandUUID: String?
    /// The report body, verbatim (stored for final statuses).
    package var rawReport: Data
    /// Bind the certificate on first sight (PROTOCOL.md §2 `retro`).
    package var retro: Bool
    /// Recorded in the poll statement when the identity is allowed (Idle included).
    package var webhookEvent: WebhookEventRecord?

    package init(
        enrollmentID: String,
        deviceChannelID: String,
        certificateHash: [UInt8],
        status: String,
        commandUUID: String?,
        rawReport: Data,
        retro: Bool,
        webhookEvent: WebhookEventRecord? = nil
    ) {
        self.enrollmentID = enrollmentID
        self.deviceChannelID = deviceChannelID
        self.certificateHash = certificateHash
        self.status = status
        self.commandUUID = commandUUID
        self.rawReport = rawReport
        self.retro = retro
        self.webhookEvent = webhookEvent
    }
}

/// The command a device gets next: its stored bytes, verbatim.
package struct QueuedCommand: Sendable, Equatable {
    package var commandUUID: String
    package var plist: ByteBuffer

    package init(commandUUID: String, plist: ByteBuffer) {
        self.commandUUID = commandUUID
        self.plist = plist
    }
}

package enum CommandPollOutcome: Sendable, Equatable {
    /// The identity is not allowed for this enrollment; nothing was stored.
    case refused(BindingDecision)
    /// The report was applied; `nil` means the queue is empty.
    case next(QueuedCommand?)
}

/// The command queue (PROTOCOL.md §4).
package protocol CommandQueue: Sendable {
    /// Stores the command once and a queue entry for every known target, in one statement for
    /// any number of targets. With a `pushIntent`, also records a push outbox row per queued
    /// target. Throws `StorageError.duplicateCommand` when the CommandUUID exists.
    func enqueue(_ command: NewCommand, to enrollmentIDs: [String], pushIntent: PushIntent?) async throws
        -> EnqueueOutcome

    /// Records push intent for the known IDs (push-only requests); returns the unknown ones.
    func recordPushIntent(_ intent: PushIntent, enrollmentIDs: [String]) async throws -> [String]

    /// Applies a report and selects the next command in one database round trip: checks the
    /// binding, stores the result and retires the entry (final statuses), records NotNow, and
    /// returns the next eligible command.
    func poll(_ poll: CommandPoll) async throws -> CommandPollOutcome
}

/// A topic's APNs push certificate.
package struct PushCertificateRecord: Sendable, Equatable {
    package var topic: String
    package var certificatePEM: String
    package var privateKeyPEM: String
    package var notAfter: Date

    package init(topic: String, certificatePEM: String, privateKeyPEM: String, notAfter: Date) {
        self.topic = topic
        self.certificatePEM = certificatePEM
        self.privateKeyPEM = privateKeyPEM
        self.notAfter = notAfter
    }
}

package protocol PushCertificateStore: Sendable {
    /// Inserts or replaces the certificate for its topic.
    func savePushCertificate(_ record: PushCertificateRecord) async throws
    func fetchPushCertificate(topic: String) async throws -> PushCertificateRecord?
}

/// Storage failures that are not our fault, or that a caller must tell apart.
package enum StorageError: Error, Sendable, Equatable {
    case duplicateCommand(String)
    case unknownDevice(String)
    /// The database schema is older than this build needs (run `APIService migrate`).
    case schemaOutdated(current: Int, required: Int)
    /// The topic's private key is sealed and no key-encryption key (`MDM_PUSH_KEY_ENCRYPTION_KEY`) is set.
    case pushKeyEncrypted(topic: String)
    /// The topic's sealed private key does not open with the configured key: another key, or an altered row.
    case pushKeyUndecryptable(topic: String)
}
