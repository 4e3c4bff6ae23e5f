import Foundation
import Logging
import MDMServerSupport
import MDMStorage

// TEMPORARY: replaced by the APNs client branch at merge.
struct APNsPush: Sendable, Hashable {
    var topic: String
    var deviceToken: String
    var pushMagic: String
    var certificateVersion: Date
    var expiration: Date?
}

enum APNsOutcome: Sendable, Equatable {
    case delivered(apnsID: String)
    case unregistered(since: Date?, reason: String)
    case rejected(status: Int, reason: String)
    case failed(reason: String)
}

struct APNsConfiguration: Sendable {
    init(settings: Settings) throws(ConfigurationError) {}
    init() {}
}

final class APNsClient: Sendable {
    init(configuration: APNsConfiguration, certificates: any PushCertificateStore, logger: Logger) throws {}
    func send(_ push: APNsPush) async -> APNsOutcome { .failed(reason: "placeholder") }
    func shutdown() async {}
}
