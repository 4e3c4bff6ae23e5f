import Foundation
import Hummingbird
import MDMProtocol
import MDMServerSupport
import MDMStorage

/// `PUT /migration` rules: check-ins replayed from another server (NanoMDM's `nano2nano` and
/// similar tools) are stored without identity checks. Only what moves an enrollment across is
/// accepted: `Authenticate` (device and channel; the certificate is bound later, on the
/// device's first request, with `MDM_CERT_RETRO`), `TokenUpdate` (push info, user channels)
/// and `SetBootstrapToken`.
struct MigrationHandler: Sendable {
    var store: any EnrollmentStore

    func apply(_ checkin: CheckinRequest) async throws {
        let enrollment = checkin.enrollment
        switch checkin.message {
        case .authenticate(let message):
            guard !enrollment.type.isUserChannel else {
                throw RequestFailure.badRequest("Authenticate on a user channel")
            }
            try await store.saveMigratedAuthenticate(
                MigratedAuthenticate(
                    enrollment: enrollment,
                    serialNumber: message.serialNumber,
                    topic: message.topic,
                    rawMessage: checkin.raw
                )
            )
        case .tokenUpdate(let message):
            // A device that never authenticated is `StorageError.unknownDevice`: 400.
            _ = try await store.saveTokenUpdate(TokenUpdateRecord(message, checkin: checkin))
        case .setBootstrapToken(let message):
            try await store.saveBootstrapToken(deviceID: enrollment.deviceChannelID, token: message.bootstrapToken)
        default:
            throw RequestFailure.badRequest("\(checkin.messageType) is not accepted for migration")
        }
    }
}

/// `PUT /migration`, behind the API key and only when `MDM_MIGRATION_ENABLED` is set.
struct MigrationController: Sendable {
    var handler: MigrationHandler
    var maxBodyBytes: Int

    func addRoutes<Context: RequestContext>(to group: RouterGroup<Context>) {
        group.put { request, _ in
            let body = try await request.body.collect(upTo: maxBodyBytes)
            try await handler.apply(try CheckinRequest.decode(Data(body.readableBytesView)))
            return Response(status: .ok)
        }
    }
}
