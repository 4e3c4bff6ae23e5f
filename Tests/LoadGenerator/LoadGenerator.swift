import AsyncHTTPClient
import Foundation
import MDMTestSupport
import NIOCore
import NIOPosix

// mdm-loadgen: simulates N devices with their own identities against a running SwiftMDM
// (for example `deploy/local/stack up`), and reports requests/s and latency percentiles for
// enrolment, Idle polls and queue draining. Settings default to `.stack/stack.env` values.

struct Options {
    var checkinURL: String
    var commandURL: String
    var apiURL: String
    var apiKey: String
    var caCert: String
    var caKey: String
    var devices = 16
    var commands = 20
    var history = 0
    var idlePolls = 200
    var keyKind = TestKeyKind.rsa2048

    static let usage = """
        usage: mdm-loadgen [--devices N] [--commands K] [--history H] [--idle-polls P] [--key rsa|p256]
                           [--checkin-url U] [--command-url U] [--api-url U] [--api-key K]
                           [--ca-cert PEM] [--ca-key PEM]
        URLs, key and CA default to MDM_CHECKIN_URL, MDM_COMMAND_URL, MDM_API_URL, MDM_API_KEY,
        MDM_CA_CERT, MDM_CA_KEY (source .stack/stack.env).
          --devices     simulated devices, each polling in its own task (default 16)
          --commands    commands queued to every device and drained with Acknowledged (default 20)
          --history     acknowledged commands per device before measuring (default 0)
          --idle-polls  Idle polls per device (default 200)
          --key         identity key of every device: rsa (2048-bit, what SCEP gives devices;
                        default) or p256
        Reports are signed before each phase is timed, the way every device signs on its own
        CPU; every reply is checked against the exact bytes enqueued, in FIFO order.
        """

    init(arguments: [String], environment: [String: String]) throws {
        var values: [String: String] = [:]
        var index = 0
        while index < arguments.count {
            let name = arguments[index]
            guard name.hasPrefix("--"), index + 1 < arguments.count else { throw LoadError.usage(name) }
            values[String(name.dropFirst(2))] = arguments[index + 1]
            index += 2
        }
        func value(_ flag: String, _ env: String) throws -> String {
            guard let value = values[flag] ?? environment[env] else { throw LoadError.missing(flag, env) }
            return value
        }
        func number(_ flag: String, _ defaultValue: Int) throws -> Int {
            guard let raw = values[flag] else { return defaultValue }
            guard let parsed = Int(raw), parsed >= 0 else { throw LoadError.usage("--\(flag) \(raw)") }
            return parsed
        }
        checkinURL = try value("checkin-url", "MDM_CHECKIN_URL")
        commandURL = try value("command-url", "MDM_COMMAND_URL")
        apiURL = try value("api-url", "MDM_API_URL")
        apiKey = try value("api-key", "MDM_API_KEY")
        caCert = try value("ca-cert", "MDM_CA_CERT")
        caKey = try value("ca-key", "MDM_CA_KEY")
        devices = max(1, try number("devices", devices))
        commands = try number("commands", commands)
        history = try number("history", history)
        idlePolls = try number("idle-polls", idlePolls)
        switch values["key"] {
        case nil, "rsa": keyKind = .rsa2048
        case "p256": keyKind = .p256
        case let other?: throw LoadError.usage("--key \(other)")
        }
    }
}

enum LoadError: Error, CustomStringConvertible {
    case usage(String)
    case missing(String, String)
    case failed(String)

    var description: String {
        switch self {
        case .usage(let argument): "bad argument \(argument)\n\(Options.usage)"
        case .missing(let flag, let env): "--\(flag) or \(env) is required\n\(Options.usage)"
        case .failed(let detail): detail
        }
    }
}

/// A command the generator enqueues and expects back byte for byte.
struct LoadCommand: Sendable {
    var uuid: String
    var body: ByteBuffer

    static func batch(count: Int, label: String) -> [LoadCommand] {
        (0..<count).map { index in
            let uuid = "\(label)-\(index)-\(UUID().uuidString)"
            return LoadCommand(
                uuid: uuid,
                body: ByteBuffer(
                    string: """
                        <?xml version="1.0" encoding="UTF-8"?>
                        <plist version="1.0"><dict><key>CommandUUID</key><string>\(uuid)</string>
                        <key>Command</key><dict><key>RequestType</key><string>ProfileList</string></dict></dict></plist>
                        """)
            )
        }
    }
}

/// Latencies of one phase, and how long the phase took end to end.
struct PhaseResult {
    var name: String
    var latencies: [Duration]
    var elapsed: Duration

    func line() -> String {
        let sorted = latencies.sorted()
        func percentile(_ p: Double) -> String {
            guard !sorted.isEmpty else { return "-" }
            let index = min(sorted.count - 1, Int((Double(sorted.count) * p).rounded(.up)) - 1)
            return String(format: "%.2f ms", sorted[max(0, index)].milliseconds)
        }
        let rate = Double(latencies.count) / max(elapsed.seconds, 1e-9)
        return "\(name.padding(toLength: 22, withPad: " ", startingAt: 0)) "
            + "requests=\(latencies.count)  rate=\(String(format: "%.0f", rate))/s  "
            + "p50=\(percentile(0.50))  p99=\(percentile(0.99))"
    }
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
    var milliseconds: Double { seconds * 1000 }
}

struct LoadGenerator {
    var options: Options
    var http: HTTPClient

    func run() async throws {
        let ca = try TestCertificateAuthority(
            certificatePEM: String(contentsOfFile: options.caCert, encoding: .utf8),
            privateKeyPEM: String(contentsOfFile: options.caKey, encoding: .utf8)
        )
        let devices = try (0..<options.devices).map { index in
            let udid = "LOAD-\(index)-\(UUID().uuidString)"
            return SimulatedDevice(
                udid: udid,
                identity: try ca.issueDeviceIdentity(commonName: udid, keyKind: options.keyKind),
                checkinURL: options.checkinURL,
                commandURL: options.commandURL,
                transport: .signature(.device),
                httpClient: http
            )
        }
        print(
            "devices=\(options.devices) commands=\(options.commands) history=\(options.history) "
                + "idle-polls=\(options.idlePolls) key=\(options.keyKind == .p256 ? "p256" : "rsa")"
        )
        print(
            try await phase("enrol", devices) { device in
                var latencies: [Duration] = []
                for step in [device.authenticate, { try await device.tokenUpdate() }] {
                    let start = ContinuousClock.now
                    let reply = try await step()
                    latencies.append(ContinuousClock.now - start)
                    guard reply.status == 200 else { throw LoadError.failed("enrol answered \(reply.status)") }
                }
                return latencies
            }.line())

        // Reports go over each device's own connection; enrolment and enqueueing use `http`.
        var connections: [String: DeviceConnection] = [:]
        for device in devices {
            connections[device.udid] = try DeviceConnection(
                url: options.commandURL, eventLoop: MultiThreadedEventLoopGroup.singleton.next())
        }
        do {
            try await measure(devices, connections)
        } catch {
            for connection in connections.values { await connection.close() }
            throw error
        }
        for connection in connections.values { await connection.close() }
    }

    /// The timed phases, each device reporting over its own connection.
    func measure(_ devices: [SimulatedDevice], _ reporting: [String: DeviceConnection]) async throws {
        if options.history > 0 {
            let commands = LoadCommand.batch(count: options.history, label: "history")
            let reports = try await acknowledgements(of: commands, by: devices)
            try await enqueue(commands, to: devices)
            print(
                try await phase("history (drain)", devices) { try await drain($0, reporting, commands, reports) }.line()
            )
        }
        if options.idlePolls > 0 {
            let idle = try await signed(by: devices) { [try $0.signedReport(status: "Idle", commandUUID: nil)] }
            print(
                try await phase("idle polls", devices) { device in
                    var latencies: [Duration] = []
                    guard let report = idle[device.udid]?.first, let connection = reporting[device.udid] else {
                        throw LoadError.failed("\(device.udid): no connection or report")
                    }
                    for _ in 0..<options.idlePolls {
                        let start = ContinuousClock.now
                        let reply = try await connection.send(report)
                        latencies.append(ContinuousClock.now - start)
                        guard reply.status == 200, reply.body.readableBytes == 0 else {
                            throw LoadError.failed(
                                "idle answered \(reply.status) with \(reply.body.readableBytes) bytes")
                        }
                    }
                    return latencies
                }.line())
        }
        if options.commands > 0 {
            let commands = LoadCommand.batch(count: options.commands, label: "load")
            let reports = try await acknowledgements(of: commands, by: devices)
            let start = ContinuousClock.now
            try await enqueue(commands, to: devices)
            let enqueueTime = ContinuousClock.now - start
            print(
                "enqueue".padding(toLength: 22, withPad: " ", startingAt: 0)
                    + " commands=\(options.commands) targets=\(devices.count)  "
                    + String(format: "%.1f ms per command", enqueueTime.milliseconds / Double(options.commands))
            )
            print(
                try await phase("drain (ack polls)", devices) { try await drain($0, reporting, commands, reports) }
                    .line())
        }
    }

    /// Idle, then Acknowledged for every command returned, until the queue is empty. Each reply
    /// must be the next command's exact bytes, in the order enqueued.
    func drain(
        _ device: SimulatedDevice,
        _ connections: [String: DeviceConnection],
        _ commands: [LoadCommand],
        _ reports: [String: [SignedReport]]
    ) async throws -> [Duration] {
        guard let reports = reports[device.udid], let connection = connections[device.udid] else {
            throw LoadError.failed("\(device.udid): no connection or reports")
        }
        var latencies: [Duration] = []
        let empty = ByteBuffer()
        for (index, report) in reports.enumerated() {
            let start = ContinuousClock.now
            let reply = try await connection.send(report)
            latencies.append(ContinuousClock.now - start)
            let expected = index < commands.count ? commands[index].body : empty
            guard reply.status == 200, reply.body == expected else {
                throw LoadError.failed(
                    "\(device.udid): report \(index) answered \(reply.status) with \(reply.body.readableBytes) bytes, "
                        + "expected \(index < commands.count ? commands[index].uuid : "an empty queue")")
            }
        }
        return latencies
    }

    /// Idle, then Acknowledged for each command: every device's drain, signed ahead.
    func acknowledgements(of commands: [LoadCommand], by devices: [SimulatedDevice]) async throws
        -> [String: [SignedReport]]
    {
        try await signed(by: devices) { device in
            try [device.signedReport(status: "Idle", commandUUID: nil)]
                + commands.map { try device.signedReport(status: "Acknowledged", commandUUID: $0.uuid) }
        }
    }

    /// Reports signed by every device at once (signing RSA is the slow part), by UDID.
    func signed(
        by devices: [SimulatedDevice], _ sign: @escaping @Sendable (SimulatedDevice) throws -> [SignedReport]
    ) async throws -> [String: [SignedReport]] {
        try await withThrowingTaskGroup(of: (String, [SignedReport]).self) { group in
            for device in devices { group.addTask { (device.udid, try sign(device)) } }
            var all: [String: [SignedReport]] = [:]
            for try await (udid, reports) in group { all[udid] = reports }
            return all
        }
    }

    func enqueue(_ commands: [LoadCommand], to devices: [SimulatedDevice]) async throws {
        let ids = devices.map(\.udid).joined(separator: ",")
        for command in commands {
            var request = HTTPClientRequest(url: "\(options.apiURL)/v1/enqueue/\(ids)?nopush=1")
            request.method = .PUT
            request.headers.add(name: "Authorization", value: "Bearer \(options.apiKey)")
            request.body = .bytes(command.body)
            let response = try await http.execute(request, timeout: .seconds(60))
            _ = try await response.body.collect(upTo: 16 * 1024 * 1024)
            guard response.status == .ok else { throw LoadError.failed("enqueue answered \(response.status.code)") }
        }
    }

    /// Runs `work` for every device at once and gathers the latencies.
    func phase(
        _ name: String, _ devices: [SimulatedDevice],
        _ work: @escaping @Sendable (SimulatedDevice) async throws -> [Duration]
    )
        async throws -> PhaseResult
    {
        let start = ContinuousClock.now
        let latencies = try await withThrowingTaskGroup(of: [Duration].self) { group in
            for device in devices { group.addTask { try await work(device) } }
            var all: [Duration] = []
            for try await some in group { all.append(contentsOf: some) }
            return all
        }
        return PhaseResult(name: name, latencies: latencies, elapsed: ContinuousClock.now - start)
    }
}

@main
enum LoadGeneratorMain {
    static func main() async {
        // Like the roles: the simulated devices' tasks run on the HTTP client's event loops,
        // so the generator spends its share of the machine on requests, not on thread hops.
        _ = NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor()
        let arguments = Array(CommandLine.arguments.dropFirst())
        if arguments.contains("--help") || arguments.contains("-h") {
            print(Options.usage)
            return
        }
        do {
            let options = try Options(arguments: arguments, environment: ProcessInfo.processInfo.environment)
            var configuration = HTTPClient.Configuration()
            configuration.connectionPool = .init(
                idleTimeout: .seconds(60),
                concurrentHTTP1ConnectionsPerHostSoftLimit: max(8, options.devices)
            )
            let http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
            let outcome: Result<Void, any Error>
            do {
                try await LoadGenerator(options: options, http: http).run()
                outcome = .success(())
            } catch {
                outcome = .failure(error)
            }
            try await http.shutdown()
            try outcome.get()
        } catch {
            FileHandle.standardError.write(Data("mdm-loadgen: \(error)\n".utf8))
            exit(1)
        }
    }
}
