import Logging
import MDMStorage
import MDMTestSupport
import PostgresNIO
import Testing

@Suite(.enabled(if: TestDatabase.isEnabled, "set MDM_TEST_DATABASE_URL or run deploy/local/test"))
struct SchemaMigratorTests {
    @Test
    func migrationsApplyOnceAndReportTheLatestVersion() async throws {
        try await TestDatabase.withFreshClient(migrated: false) { client in
            let migrator = SchemaMigrator(client: client, logger: TestDatabase.quietLogger)
            #expect(try await migrator.currentVersion() == 0)
            let applied = try await migrator.migrate()
            #expect(applied == Migration.all.map(\.version))
            #expect(try await migrator.currentVersion() == SchemaMigrator.latestVersion)
            #expect(try await migrator.migrate() == [])
            #expect(try await migrator.currentVersion() == SchemaMigrator.latestVersion)
        }
    }

    @Test
    func concurrentMigratorsApplyEachMigrationOnce() async throws {
        try await TestDatabase.withFreshClient(migrated: false) { client in
            let applied = try await withThrowingTaskGroup(of: [Int].self, returning: [Int].self) { group in
                for _ in 0..<4 {
                    group.addTask {
                        try await SchemaMigrator(client: client, logger: TestDatabase.quietLogger).migrate()
                    }
                }
                return try await group.reduce(into: []) { $0 += $1 }
            }
            #expect(applied.sorted() == Migration.all.map(\.version))
        }
    }

    @Test
    func migrationVersionsAreIncreasing() {
        let versions = Migration.all.map(\.version)
        #expect(versions == Array(1...versions.count))
        #expect(SchemaMigrator.latestVersion == versions.last)
    }

    @Test
    func outdatedSchemaIsRefused() async throws {
        try await TestDatabase.withFreshClient(migrated: false) { client in
            let migrator = SchemaMigrator(client: client, logger: TestDatabase.quietLogger)
            await #expect(throws: StorageError.schemaOutdated(current: 0, required: SchemaMigrator.latestVersion)) {
                try await migrator.requireCurrentSchema()
            }
            try await migrator.migrate()
            try await migrator.requireCurrentSchema()
        }
    }

    @Test
    func newerSchemaIsAccepted() async throws {
        try await TestDatabase.withFreshClient { client in
            let newer = SchemaMigrator.latestVersion + 1
            try await client.query("INSERT INTO schema_migrations (version, name) VALUES (\(newer), 'from the future')")
            let migrator = SchemaMigrator(client: client, logger: TestDatabase.quietLogger)
            #expect(try await migrator.currentVersion() == newer)
            try await migrator.requireCurrentSchema()
        }
    }

    @Test
    func healthCheckReportsReachabilityAndSchemaVersion() async throws {
        try await TestDatabase.withFreshClient { client in
            let health = PostgresHealthCheck(client: client, logger: TestDatabase.quietLogger)
            try await health.ping()
            #expect(try await health.schemaVersion() == SchemaMigrator.latestVersion)
            try await health.requireCurrentSchema()
        }
    }
}
