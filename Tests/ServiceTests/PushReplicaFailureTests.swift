import AsyncHTTPClient
import Foundation
import Logging
import MDMBus
import MDMServerSupport
import MDMStorage
import MDMTestSupport
import NIOCore
import PostgresNIO
import Synchronization
import Testing

@testable import APIService

/// PushService as real processes: one is killed (SIGKILL) in the middle of a burst.
@Suite("Push: a PushService replica killed mid-burst")
struct PushReplicaFailureTests {
    static let topic = "com.apple.mgmt.External.burst"
    static let deviceCount = 5000

    @Test func everyDeviceIsPushedAndTheAPISeesNoErrorWhenAReplicaIsKilled() async throws {
        let database = try await TestDatabase.create(logger: TestStack.logger)
        let pushCA = try TestCertificateAuthority.make(commonName: "Burst Push CA")
        let apns = try await MockAPNs.start(trustRoots: [pushCA.certificate])
        let work = try makeTemporaryDirectory(prefix: "mdm-push-kill")
        let apnsCA = work.appendingPathComponent("apns-ca.pem")
        try Data(apns.serverTrustRootPEM.utf8).write(to: apnsCA)
        let stream = TestRedis.keyspace("burst").key("requests")
        let redisURL = try TestRedis.url()
        let replicaEnvironment = [
            "MDM_DATABASE_URL": database.url, "MDM_REDIS_URL": redisURL, "MDM_PUSH_STREAM": stream,
            "MDM_APNS_URL": apns.baseURL, "MDM_APNS_CA_CERTS": apnsCA.path, "MDM_PUSH_RECLAIM_IDLE": "2",
            "MDM_PUSH_RECLAIM_INTERVAL": "0.5", "MDM_PUSH_BATCH_SIZE": "2", "MDM_PUSH_CONCURRENCY": "500",
            "MDM_LOG_LEVEL": "warning", "MDM_DATABASE_POOL_SIZE": "4",
        ]
        let processes = RoleProcesses()
        do {
            let tokens = try await database.withClient { client in
                try await PushFleet.seed(
                    client, prefix: "BURST", count: Self.deviceCount, topic: Self.topic, pushCA: pushCA,
                    logger: TestStack.logger)
            }
            let first = try await RoleProcess.start(.push, environment: replicaEnvironment)
            processes.add(first)

            var apiConfiguration = APIConfiguration(
                server: ServerConfiguration(
                    host: "127.0.0.1", port: 0, databaseURL: database.url, databasePoolSize: 8),
                apiKey: "burst-api-key",
                redis: try RedisConfiguration(url: redisURL)
            )
            apiConfiguration.pushStream = stream
            apiConfiguration.pushWaitTimeout = .seconds(120)
            let reporter = PortReporter()
            let api = try buildAPIApplication(
                configuration: apiConfiguration, logger: TestStack.logger, metrics: MDMMetrics(),
                onServerRunning: reporter.report)
            let replies = try await withRunningApplication(api, reporter: reporter) { port in
                try await withThrowingTaskGroup(of: (Int, [String: [String: String]]).self) { group in
                    for chunk in stride(from: 1, through: Self.deviceCount, by: 500) {
                        let ids = (chunk..<chunk + 500).map { "BURST-\($0)" }
                        group.addTask {
                            let command = try makeCommand()
                            let reply = try await Self.enqueue(
                                command.plist, to: ids, api: "http://127.0.0.1:\(port)", key: "burst-api-key")
                            return (reply.status, reply.statuses)
                        }
                    }
                    // Kill the only replica once part of the burst is through, then start
                    // its replacement: it takes over what the dead one had read.
                    _ = try await apns.waitForRequests(count: 300, timeout: .seconds(60))
                    first.kill()
                    _ = try await first.waitForExit(timeout: .seconds(30))
                    processes.add(try await RoleProcess.start(.push, environment: replicaEnvironment))

                    var all: [(Int, [String: [String: String]])] = []
                    for try await reply in group { all.append(reply) }
                    return all
                }
            }

            #expect(replies.count == Self.deviceCount / 500)
            for (status, statuses) in replies {
                #expect(status == 200)
                #expect(statuses.count == 500)
                #expect(statuses.values.allSatisfy { $0["push_result"] != nil && $0["push_error"] == nil })
            }
            let pushed = Set(await apns.requests().compactMap(\.token))
            #expect(pushed.isSuperset(of: tokens), "\(tokens.subtracting(pushed).count) devices were never pushed")
        } catch {
            await processes.stopAll()
            try? await apns.shutdown()
            try? await database.drop()
            throw error
        }
        await processes.stopAll()
        try await apns.shutdown()
        try await database.drop()
        try? FileManager.default.removeItem(at: work)
    }

    struct Reply: Sendable {
        var status: Int
        var statuses: [String: [String: String]]
    }

    static func enqueue(_ command: Data, to ids: [String], api: String, key: String) async throws -> Reply {
        var request = HTTPClientRequest(url: api + "/v1/enqueue/" + ids.joined(separator: ","))
        request.method = .PUT
        request.headers.add(name: "Authorization", value: "Bearer \(key)")
        request.body = .bytes(ByteBuffer(bytes: command))
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(180))
        let body = try await response.body.collect(upTo: 16 << 20)
        let json = try JSONSerialization.jsonObject(with: Data(body.readableBytesView)) as? [String: Any]
        return Reply(
            status: Int(response.status.code),
            statuses: json?["status"] as? [String: [String: String]] ?? [:]
        )
    }
}

/// Role processes a test started, stopped together at the end.
final class RoleProcesses: Sendable {
    private let processes = Mutex<[RoleProcess]>([])

    func add(_ process: RoleProcess) {
        processes.withLock { $0.append(process) }
    }

    func stopAll() async {
        for process in processes.withLock({ $0 }) { _ = await process.stop() }
    }
}
