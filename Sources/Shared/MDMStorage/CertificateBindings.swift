import Logging
import NIOCore
import PostgresNIO

/// Identity-certificate bindings (PROTOCOL.md §2), shared by the check-in and command paths.
enum CertificateBindings {
    /// The decision for a hash whose binding, if any, names `boundDeviceID`.
    static func decision(boundDeviceID: String?, deviceChannelID: String) -> BindingDecision {
        switch boundDeviceID {
        case deviceChannelID: .allowed
        case nil: .notBound
        default: .boundToAnotherDevice
        }
    }

    static func boundDevice(
        of certificateHash: ByteBuffer,
        client: PostgresClient,
        logger: Logger
    ) async throws -> String? {
        try await client.query(
            "SELECT device_id FROM certificate_bindings WHERE sha256 = \(certificateHash)",
            logger: logger
        ).first(decoding: String.self)
    }

    /// Binds the hash on first sight (`retro`): only when the device exists and neither it nor
    /// the hash has any binding yet. Returns the resulting decision.
    static func bindOnFirstSight(
        _ certificateHash: ByteBuffer,
        deviceChannelID: String,
        client: PostgresClient,
        logger: Logger
    ) async throws -> BindingDecision {
        try await client.withTransaction(logger: logger) { connection in
            // Locking the device row serialises first-sight binds of one device, so two
            // concurrent requests with different certificates cannot both bind.
            let device = try await connection.query(
                "SELECT id FROM devices WHERE id = \(deviceChannelID) FOR UPDATE",
                logger: logger
            ).first(decoding: String.self)
            guard device != nil else { return .notBound }
            let inserted = try await connection.query(
                """
                INSERT INTO certificate_bindings (sha256, device_id)
                SELECT \(certificateHash), \(deviceChannelID)
                WHERE NOT EXISTS (SELECT 1 FROM certificate_bindings WHERE device_id = \(deviceChannelID))
                ON CONFLICT (sha256) DO NOTHING
                RETURNING device_id
                """,
                logger: logger
            ).first(decoding: String.self)
            if inserted != nil { return .allowed }
            let bound = try await connection.query(
                "SELECT device_id FROM certificate_bindings WHERE sha256 = \(certificateHash)",
                logger: logger
            ).first(decoding: String.self)
            return decision(boundDeviceID: bound, deviceChannelID: deviceChannelID)
        }
    }
}
