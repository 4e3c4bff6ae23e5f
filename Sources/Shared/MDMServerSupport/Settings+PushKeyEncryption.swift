import MDMStorage

extension Settings {
    /// `MDM_PUSH_KEY_ENCRYPTION_KEY` (or `_FILE`): base64 of the 32-byte key that seals push-certificate
    /// private keys at rest; `nil` when unset (keys are stored as plain PEM).
    package func pushKeyEncryptionKey() throws(ConfigurationError) -> PushKeyEncryptionKey? {
        let name = "MDM_PUSH_KEY_ENCRYPTION_KEY"
        guard let value = try secret(name) else { return nil }
        do {
            return try PushKeyEncryptionKey(base64: value)
        } catch {
            throw ConfigurationError(setting: name, problem: error.description)
        }
    }
}
