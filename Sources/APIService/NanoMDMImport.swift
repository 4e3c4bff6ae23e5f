import Foundation
import Logging
import MDMServerSupport
import MDMStorage
import PostgresNIO

/// `APIService migrate-from-nanomdm --nanomdm-database-url URL [--dry-run]`: imports a NanoMDM
/// PostgreSQL database into this one (already migrated), prints a summary and exits.
func runNanoMDMImport(settings: Settings, logger: Logger) async throws {
    let summary = try await importNanoMDM(settings: settings, logger: logger)
    print(summary)
}

func importNanoMDM(settings: Settings, logger: Logger) async throws -> NanoMDMImportSummary {
    let server = try ServerConfiguration(settings: settings, defaultPort: APIConfiguration.defaultPort)
    guard let sourceURL = try settings.secret("MDM_NANOMDM_DATABASE_URL") else {
        throw ConfigurationError(
            setting: "MDM_NANOMDM_DATABASE_URL", problem: "required (or MDM_NANOMDM_DATABASE_URL_FILE)")
    }
    let source: PostgresClient
    do {
        source = PostgresClient(
            configuration: try DatabaseURL(sourceURL).configuration(maximumConnections: 2),
            backgroundLogger: logger
        )
    } catch {
        throw ConfigurationError(setting: "MDM_NANOMDM_DATABASE_URL", problem: "\(error)")
    }
    let dryRun = try settings.bool("MDM_DRY_RUN", default: false)
    let destination = try Database.makeClient(configuration: server, logger: logger)
    return try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { await source.run() }
        group.addTask { await destination.run() }
        defer { group.cancelAll() }
        try await SchemaMigrator(client: destination, logger: logger).requireCurrentSchema()
        var (summary, certificates) = try await NanoMDMImporter(
            source: source, destination: destination, logger: logger
        ).run(dryRun: dryRun)
        let store = PostgresPushCertificateStore(client: destination, logger: logger)
        let handler = PushCertificateHandler(store: store)
        for certificate in certificates {
            guard try await store.fetchPushCertificate(topic: certificate.topic) == nil else { continue }
            // Validated like an upload: a certificate NanoMDM kept but we cannot use is reported.
            do {
                let record = try PushCertificateHandler.parse(
                    pem: certificate.certificatePEM + "\n" + certificate.privateKeyPEM)
                if !dryRun { try await handler.store.savePushCertificate(record) }
                summary.pushCertificates.imported += 1
            } catch {
                logger.error(
                    "push certificate not imported", metadata: ["topic": "\(certificate.topic)", "error": "\(error)"])
            }
        }
        return summary
    }
}
