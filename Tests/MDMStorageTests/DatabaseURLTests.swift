import MDMStorage
import PostgresNIO
import Testing

@Suite
struct DatabaseURLTests {
    @Test
    func fullURLIsParsed() throws {
        let url = try DatabaseURL("postgres://mdm:p%40ss%3Aword@db.example.com:6432/swiftmdm?sslmode=require")
        #expect(url.username == "mdm")
        #expect(url.password == "p@ss:word")
        #expect(url.host == "db.example.com")
        #expect(url.port == 6432)
        #expect(url.database == "swiftmdm")
        #expect(url.sslMode == .require)
        #expect(url.unixSocketPath == nil)
        let configuration = url.configuration(maximumConnections: 7)
        #expect(configuration.host == "db.example.com")
        #expect(configuration.port == 6432)
        #expect(configuration.username == "mdm")
        #expect(configuration.password == "p@ss:word")
        #expect(configuration.database == "swiftmdm")
        #expect(configuration.options.maximumConnections == 7)
    }

    @Test
    func postgresqlSchemeAndDefaultsAreAccepted() throws {
        let url = try DatabaseURL("postgresql://mdm@localhost/swiftmdm")
        #expect(url.port == 5432)
        #expect(url.password == nil)
        #expect(url.sslMode == .prefer)
        #expect(try DatabaseURL("postgres://mdm@[::1]:5433/x").host == "::1")
    }

    @Test
    func unixSocketDirectoryBecomesTheSocketPath() throws {
        let url = try DatabaseURL("postgres://mdm@/swiftmdm?host=/run/postgresql")
        #expect(url.unixSocketPath == "/run/postgresql/.s.PGSQL.5432")
        #expect(url.configuration().unixSocketPath == "/run/postgresql/.s.PGSQL.5432")
        let explicit = try DatabaseURL("postgres://mdm@/swiftmdm?host=/tmp/.s.PGSQL.6000")
        #expect(explicit.unixSocketPath == "/tmp/.s.PGSQL.6000")
    }

    @Test(
        arguments: [
            ("mysql://mdm@localhost/db", "scheme"),
            ("postgres://localhost/db", "user name"),
            ("postgres://mdm@localhost/db?sslmode=always", "sslmode"),
            ("postgres://mdm@localhost/db?pool=3", "pool"),
            ("postgres://mdm@/db", "host"),
            ("postgres://mdm@localhost:0/db", "port"),
        ]
    )
    func badURLIsRejectedNamingTheProblem(url: String, problem: String) {
        #expect {
            try DatabaseURL(url)
        } throws: { error in
            "\(error)".contains(problem)
        }
    }

    @Test
    func passwordNeverAppearsInDescriptionOrErrors() throws {
        let url = try DatabaseURL("postgres://mdm:hunter2@localhost/db?sslmode=disable")
        #expect(!url.description.contains("hunter2"))
        #expect(url.description == "postgres://mdm:***@localhost:5432/db?sslmode=disable")
        #expect {
            try DatabaseURL("postgres://mdm:hunter2@localhost/db?sslmode=bad")
        } throws: { error in
            !"\(error)".contains("hunter2")
        }
    }

    @Test
    func urlStringRoundTrips() throws {
        let url = try DatabaseURL("postgres://mdm:p%40ss@127.0.0.1:6432/swiftmdm?sslmode=verify-full")
        #expect(try DatabaseURL(url.urlString) == url)
        let socket = try DatabaseURL("postgres://mdm@/swiftmdm?host=/run/postgresql")
        #expect(try DatabaseURL(socket.urlString) == socket)
        #expect(try DatabaseURL(url.with(database: "other").urlString).database == "other")
    }
}
