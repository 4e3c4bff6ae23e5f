import Foundation

/// Reply to `GetBootstrapToken`: the key is omitted when no token is stored.
package struct BootstrapTokenReply: Sendable, Equatable, Codable {
    package var bootstrapToken: Data?

    package init(bootstrapToken: Data?) {
        self.bootstrapToken = bootstrapToken
    }

    enum CodingKeys: String, CodingKey {
        case bootstrapToken = "BootstrapToken"
    }
}

/// Reply to the first `UserAuthenticate` when the zero-length digest challenge is enabled.
package struct DigestChallengeReply: Sendable, Equatable, Codable {
    package var digestChallenge: String

    package init(digestChallenge: String = "") {
        self.digestChallenge = digestChallenge
    }

    enum CodingKeys: String, CodingKey {
        case digestChallenge = "DigestChallenge"
    }
}

/// Reply to `GetToken`.
package struct GetTokenReply: Sendable, Equatable, Codable {
    package var tokenData: Data

    package init(tokenData: Data) {
        self.tokenData = tokenData
    }

    enum CodingKeys: String, CodingKey {
        case tokenData = "TokenData"
    }
}
