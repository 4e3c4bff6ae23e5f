import Foundation
import Logging
import MDMBus
import MDMStorage
import MDMTestSupport
import PostgresNIO

/// Pushes per second from PushService processes to the mock APNs.
///
///     mdm-push-bench [--enrollments N] [--replicas K] [--runs R]
///
/// Needs MDM_TEST_DATABASE_URL, MDM_TEST_REDIS_URL and MDM_TEST_BIN_DIR (built PushService),
/// as `deploy/local/test` exports them; run it through `MDM_TEST_COMMAND`, see
/// docs/benchmarks.md. It seeds N pushable enrollments on one topic, starts K PushService
/// replicas pointed at an in-process mock APNs (HTTP/2, TLS, client certificate required),
/// publishes push requests for every enrollment to the stream (500 enrollments per entry,
/// as APIService does) and times until the mock has answered all N.
@main
struct PushBenchmark {
    static func main() async throws {
        let arguments = CommandLine.arguments
        func option(_ name: String, _ fallback: Int) -> Int {
            guard let index = arguments.firstIndex(of: name), index + 1 < arguments.count else { return fallback }
            return Int(arguments[index + 1]) ?? fallback
        }
        let enrollments = option("--enrollments", 10_000)
        let replicas = option("--replicas", 1)
        let runs = option("--runs", 2)
        let logger = {
            var logger = Logger(label: "mdm.push-bench")
            logger.logLevel = .warning
            return logger
        }()

        let database = try await TestDatabase.create(logger: logger)
        let pushCA = try TestCertificateAuthority.make(commonName: "Bench Push CA")
        let apns = try await MockAPNs.start(trustRoots: [pushCA.certificate])
        let work = try makeTemporaryDirectory(prefix: "mdm-push-bench")
        let apnsCA = work.appendingPathComponent("apns-ca.pem")
        try Data(apns.serverTrustRootPEM.utf8).write(to: apnsCA)
        let topic = "com.apple.mgmt.External.bench"
        _ = try await database.withClient { client in
            try await PushFleet.seed(
                client, prefix: "BENCH", count: enrollments, topic: topic, pushCA: pushCA, logger: logger)
        }
        let ids = (1...enrollments).map { "BENCH-\($0)" }
        let stream = "mdm:push:bench:\(UUID().uuidString.prefix(8))"
        let redisURL = try TestRedis.url()
        var processes: [RoleProcess] = []
        for index in 0..<replicas {
            processes.append(
                try await RoleProcess.start(
                    .push,
                    environment: [
                        "MDM_DATABASE_URL": database.url, "MDM_REDIS_URL": redisURL, "MDM_PUSH_STREAM": stream,
                        "MDM_APNS_URL": apns.baseURL, "MDM_APNS_CA_CERTS": apnsCA.path,
                        "MDM_PUSH_CONSUMER_NAME": "bench-\(index)", "MDM_LOG_LEVEL": "warning",
                    ]
                )
            )
        }
        let client = try RedisClient(url: redisURL, logger: logger)
        let bus = RedisPushBus(client: client, stream: stream, logger: logger)
        print("push benchmark: \(enrollments) enrollments, \(replicas) PushService replica(s), mock APNs over HTTP/2")
        for run in 1...runs {
            let before = await apns.requests().count
            let requests = stride(from: 0, to: ids.count, by: 500).map {
                PushRequest(enrollmentIDs: Array(ids[$0..<min($0 + 500, ids.count)]))
            }
            let start = ContinuousClock.now
            try await bus.publish(requests)
            _ = try await apns.waitForRequests(count: before + enrollments, timeout: .seconds(600))
            let elapsed = ContinuousClock.now - start
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            print(
                "run \(run): \(enrollments) pushes in \(String(format: "%.2f", seconds)) s = "
                    + "\(Int(Double(enrollments) / seconds)) pushes/s")
        }
        await client.shutdown()
        for process in processes { _ = await process.stop() }
        try await apns.shutdown()
        try await database.drop()
        try? FileManager.default.removeItem(at: work)
    }
}
