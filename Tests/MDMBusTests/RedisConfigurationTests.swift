import MDMBus
import Testing

@Suite
struct RedisConfigurationTests {
    @Test
    func fullURLParses() throws {
        let configuration = try RedisConfiguration(
            url: "redis://pusher:s3cret@redis.internal:6380/2?pool_size=8&connect_timeout_ms=500&command_timeout_ms=750"
        )
        #expect(configuration.host == "redis.internal")
        #expect(configuration.port == 6380)
        #expect(configuration.username == "pusher")
        #expect(configuration.password == "s3cret")
        #expect(configuration.database == 2)
        #expect(configuration.poolSize == 8)
        #expect(configuration.connectTimeout == .milliseconds(500))
        #expect(configuration.commandTimeout == .milliseconds(750))
        #expect(configuration.tls == nil)
    }

    @Test
    func defaultsApplyToAMinimalURL() throws {
        let configuration = try RedisConfiguration(url: "redis://localhost")
        #expect(configuration.host == "localhost")
        #expect(configuration.port == 6379)
        #expect(configuration.username == nil)
        #expect(configuration.password == nil)
        #expect(configuration.database == 0)
        #expect(configuration.poolSize == 4)
        #expect(configuration.commandTimeout == .seconds(5))
    }

    @Test
    func passwordOnlyCredentialsAuthenticateAsTheDefaultUser() throws {
        let configuration = try RedisConfiguration(url: "redis://:pa55@127.0.0.1:7000")
        #expect(configuration.username == nil)
        #expect(configuration.password == "pa55")
    }

    @Test
    func percentEncodedCredentialsAreDecoded() throws {
        let configuration = try RedisConfiguration(url: "redis://us%40er:p%3Ass%2Fw%25rd@host")
        #expect(configuration.username == "us@er")
        #expect(configuration.password == "p:ss/w%rd")
    }

    @Test
    func bracketedIPv6HostsParse() throws {
        let configuration = try RedisConfiguration(url: "redis://[::1]:6390")
        #expect(configuration.host == "::1")
        #expect(configuration.port == 6390)
        #expect(configuration.endpoint == "[::1]:6390")
    }

    @Test
    func redissEnablesTLSAndZeroCommandTimeoutDisablesIt() throws {
        let configuration = try RedisConfiguration(url: "rediss://cache.example:6390?command_timeout_ms=0")
        #expect(configuration.tls != nil)
        #expect(configuration.commandTimeout == nil)
    }

    @Test(arguments: [
        "http://host:6379",
        "redis//host",
        "redis://",
        "redis://:secret-password@host:notaport",
        "redis://:secret-password@host:70000",
        "redis://:secret-password@host/db1",
        "redis://user-without-password@host",
        "redis://:secret-password@host?pool_size=0",
        "redis://:secret-password@host?pool_sise=2",
        "redis://:secret-password@host?tls_ca_file=/ca.pem",
        "redis://:secret%zzpassword@host",
        "redis://:secret-password@[::1",
        "redis://:secret-password@host#fragment",
    ])
    func invalidURLsAreRejectedWithoutRepeatingThePassword(url: String) {
        let error = #expect(throws: RedisError.self) { try RedisConfiguration(url: url) }
        guard case .invalidURL(let reason) = error else {
            Issue.record("expected invalidURL, got \(String(describing: error))")
            return
        }
        #expect(!reason.contains("secret"))
    }

    @Test
    func redactedURLMasksThePassword() throws {
        let configuration = try RedisConfiguration(url: "rediss://user:hunter2@h:1/3")
        #expect(configuration.redactedURL == "rediss://user:***@h:1/3")
        #expect(try RedisConfiguration(url: "redis://h").redactedURL == "redis://h:6379")
    }

    @Test
    func backoffDoublesUpToTheMaximumWithJitter() {
        let backoff = RedisBackoff(initial: .milliseconds(100), maximum: .seconds(2))
        #expect(backoff.delay(afterFailures: 0) == .zero)
        #expect(backoff.delay(afterFailures: 1, jitter: 1) == .milliseconds(100))
        #expect(backoff.delay(afterFailures: 2, jitter: 1) == .milliseconds(200))
        #expect(backoff.delay(afterFailures: 4, jitter: 1) == .milliseconds(800))
        #expect(backoff.delay(afterFailures: 6, jitter: 1) == .seconds(2))
        #expect(backoff.delay(afterFailures: 1000, jitter: 1) == .seconds(2))
        #expect(backoff.delay(afterFailures: 3, jitter: 0.5) == .milliseconds(200))
        for _ in 0..<100 {
            let delay = backoff.delay(afterFailures: 3)
            #expect(delay >= .milliseconds(200) && delay <= .milliseconds(400))
        }
    }
}
