import MDMBus

extension Settings {
    /// `MDM_REDIS_URL` (or `MDM_REDIS_URL_FILE`, as the URL may carry a password); `nil` when
    /// neither is set.
    package func redisConfiguration() throws(ConfigurationError) -> RedisConfiguration? {
        guard let url = try secret("MDM_REDIS_URL") else { return nil }
        do {
            return try RedisConfiguration(url: url)
        } catch {
            throw ConfigurationError(setting: "MDM_REDIS_URL", problem: "\(error)")
        }
    }
}

extension ReadinessCheck {
    /// Redis answers `PING`.
    package static func redis(_ client: RedisClient) -> ReadinessCheck {
        ReadinessCheck(name: "redis") { _ = try await client.ping() }
    }
}
