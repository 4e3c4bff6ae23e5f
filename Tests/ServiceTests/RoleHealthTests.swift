import AsyncHTTPClient
import Foundation
import MDMBus
import MDMServerSupport
import MDMStorage
import MDMTestSupport
import PostgresNIO
import Testing

@testable import CommandService
@testable import PushService

@Suite("Role start-up and health")
struct RoleHealthTests {
    func server(_ database: TestDatabase) -> ServerConfiguration {
        ServerConfiguration(
            host: "127.0.0.1", port: 0, databaseURL: database.url, databasePoolSize: 2, databaseStartupTimeout: 5)
    }

    @Test func pushServiceServesHealth() async throws {
        let database = try await TestDatabase.create(logger: TestStack.logger)
        defer { Task { try? await database.drop() } }
        let reporter = PortReporter()
        let app = try buildPushApplication(
            configuration: try PushConfiguration.forTests(
                server: server(database), redis: RedisConfiguration(url: TestRedis.url())),
            logger: TestStack.logger,
            onServerRunning: reporter.report
        )
        try await withRunningApplication(app, reporter: reporter) { (port: Int) async throws in
            #expect(try await status("http://127.0.0.1:\(port)/livez") == 200)
            #expect(try await status("http://127.0.0.1:\(port)/readyz") == 200)
        }
    }

    @Test func pushServiceIsNotReadyWithoutRedis() async throws {
        let database = try await TestDatabase.create(logger: TestStack.logger)
        defer { Task { try? await database.drop() } }
        let reporter = PortReporter()
        // A port nothing listens on: the role serves, but is not ready.
        var redis = try RedisConfiguration(url: "redis://127.0.0.1:1")
        redis.connectTimeout = .milliseconds(200)
        let app = try buildPushApplication(
            configuration: PushConfiguration.forTests(server: server(database), redis: redis),
            logger: TestStack.logger,
            onServerRunning: reporter.report
        )
        try await withRunningApplication(app, reporter: reporter) { (port: Int) async throws in
            #expect(try await status("http://127.0.0.1:\(port)/livez") == 200)
            #expect(try await status("http://127.0.0.1:\(port)/readyz") == 503)
        }
    }

    @Test func readinessFailsWhenTheSchemaIsOlderThanTheBuild() async throws {
        let database = try await TestDatabase.create(logger: TestStack.logger)
        defer { Task { try? await database.drop() } }
        let ca = try TestCertificateAuthority.make()
        let configuration = CommandConfiguration(
            server: server(database),
            identity: DeviceIdentityConfiguration(trustRoots: [ca.certificate])
        )
        let reporter = PortReporter()
        let app = try buildCommandApplication(
            configuration: configuration,
            logger: TestStack.logger,
            onServerRunning: reporter.report
        )
        try await withRunningApplication(app, reporter: reporter) { port in
            #expect(try await status("http://127.0.0.1:\(port)/readyz") == 200)
            try await database.forgetLatestMigration()
            #expect(try await status("http://127.0.0.1:\(port)/readyz") == 503)
        }
    }

    @Test func roleRefusesToStartOnAnOlderSchema() async throws {
        let database = try await TestDatabase.create(logger: TestStack.logger)
        defer { Task { try? await database.drop() } }
        try await database.forgetLatestMigration()
        let ca = try TestCertificateAuthority.make()
        let app = try buildCommandApplication(
            configuration: CommandConfiguration(
                server: server(database), identity: DeviceIdentityConfiguration(trustRoots: [ca.certificate])),
            logger: TestStack.logger
        )
        await #expect(throws: StorageError.self) { try await app.run() }
    }

    func status(_ url: String) async throws -> Int {
        let response = try await HTTPClient.shared.execute(
            HTTPClientRequest(url: url), timeout: TestStack.requestTimeout)
        _ = try await response.body.collect(upTo: 1 << 20)
        return Int(response.status.code)
    }
}

extension TestDatabase {
    /// Makes the database look one migration behind this build.
    func forgetLatestMigration() async throws {
        try await withClient { client in
            _ = try await client.query(
                "DELETE FROM schema_migrations WHERE version = \(SchemaMigrator.latestVersion)",
                logger: TestStack.logger
            )
        }
    }
}
