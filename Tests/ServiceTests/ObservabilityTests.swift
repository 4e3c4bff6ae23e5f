import AsyncHTTPClient
import Foundation
import Logging
import MDMServerSupport
import MDMTestSupport
import NIOCore
import NIOHTTP1
import Testing

@testable import CommandService

@Suite("Metrics, request IDs and JSON logs", .enabled(if: TestDatabase.isEnabled))
struct ObservabilityTests {
    @Test func metricsParseAsPrometheusTextAndCountersMoveWithTraffic() async throws {
        try await TestStack.with { stack in
            let before = try await scrape(stack.commandBaseURL)
            #expect(before.sum(MDMMetrics.Name.commandReports) == 0)
            #expect(before.sum(MDMMetrics.Name.postgresPoolMaxConnections) == Double(TestStack.databasePoolSize))

            let device = try stack.makeDevice()
            try await device.enroll()
            let command = try makeCommand()
            #expect(try await stack.enqueue(command.plist, to: [device.udid, "no-such-device"]).status == 207)
            #expect(try await device.idle().commandUUID() == command.uuid)
            #expect(try await device.acknowledge(command.uuid).body.isEmpty)

            let commandMetrics = try await scrape(stack.commandBaseURL)
            let reports = MDMMetrics.Name.commandReports
            #expect(commandMetrics.sum(reports, where: ["status": "Idle"]) == 1)
            #expect(commandMetrics.sum(reports, where: ["status": "Acknowledged"]) == 1)
            let requests = MDMMetrics.Name.httpRequests
            #expect(commandMetrics.sum(requests, where: ["route": "/mdm", "method": "PUT", "status": "200"]) == 2)
            #expect(
                commandMetrics.sum(
                    MDMMetrics.Name.httpRequestDuration + "_count", where: ["route": "/mdm", "method": "PUT"]) == 2)
            #expect(commandMetrics.types[MDMMetrics.Name.httpRequestDuration] == "histogram")
            #expect(commandMetrics.types[requests] == "counter")
            let open = commandMetrics.sum(MDMMetrics.Name.postgresPoolConnections)
            #expect(open >= 1 && open <= Double(TestStack.databasePoolSize), "pool connections: \(open)")

            let checkinMetrics = try await scrape(stack.checkinBaseURL)
            #expect(checkinMetrics.sum(MDMMetrics.Name.checkins, where: ["message_type": "Authenticate"]) == 1)
            #expect(checkinMetrics.sum(MDMMetrics.Name.checkins, where: ["message_type": "TokenUpdate"]) == 1)

            let apiMetrics = try await scrape(stack.apiURL)
            #expect(apiMetrics.sum(MDMMetrics.Name.commandsEnqueued) == 1, "the unknown target is not counted")
            // The route pattern, never the IDs in the path.
            #expect(apiMetrics.sum(requests, where: ["route": "/v1/enqueue/{ids}", "status": "207"]) == 1)
            #expect(!apiMetrics.samples.contains { $0.labels["route"]?.contains(device.udid) == true })
        }
    }

    @Test func unknownPathsAndMethodsAreCountedUnderOneLabel() async throws {
        try await TestStack.with { stack in
            for path in ["/nope/\(UUID().uuidString)", "/nope/\(UUID().uuidString)"] {
                let response = try await HTTPClient.shared.execute(
                    HTTPClientRequest(url: stack.commandBaseURL + path), timeout: TestStack.requestTimeout)
                #expect(response.status == .notFound)
            }
            var odd = HTTPClientRequest(url: stack.commandBaseURL + "/mdm")
            odd.method = .PROPFIND
            _ = try await HTTPClient.shared.execute(odd, timeout: TestStack.requestTimeout)
            let metrics = try await scrape(stack.commandBaseURL)
            #expect(metrics.sum(MDMMetrics.Name.httpRequests, where: ["route": "NotFound", "status": "404"]) == 3)
            #expect(metrics.sum(MDMMetrics.Name.httpRequests, where: ["method": "other"]) == 1)
            #expect(!metrics.samples.contains { $0.labels["method"] == "PROPFIND" })
        }
    }

    @Test func requestIDIsEchoedWhenSaneAndReplacedOtherwise() async throws {
        try await TestStack.with { stack in
            let given = "edge-\(UUID().uuidString)"
            #expect(try await requestID(stack.commandBaseURL + "/livez", sending: given) == given)
            let tooLong = String(repeating: "a", count: RequestID.maximumLength + 1)
            for bad in [tooLong, "has space", "quote\"d"] {
                let replaced = try #require(try await requestID(stack.commandBaseURL + "/livez", sending: bad))
                #expect(replaced != bad)
                #expect(replaced.count == 32 && replaced.allSatisfy(\.isHexDigit))
            }
            // Errors rendered outside the role's handlers carry it too.
            #expect(try await requestID(stack.commandBaseURL + "/unknown", sending: given) == given)
        }
    }

    @Test func jsonLogLinesParseAndCarryTheRequestID() async throws {
        let lines = Locked<[String]>([])
        let sink = LogLineSink { bytes in lines.withLock { $0.append(String(decoding: bytes, as: UTF8.self)) } }
        var logger = Logger(label: "swiftmdm.command") { label in
            LogSetup.makeHandler(label: label, level: .info, format: .json, sink: sink)
        }
        logger.logLevel = .info
        let database = try await TestDatabase.create(logger: TestStack.logger)
        defer { Task { try? await database.drop() } }
        let ca = try TestCertificateAuthority.make()
        let reporter = PortReporter()
        let app = try buildCommandApplication(
            configuration: CommandConfiguration(
                server: ServerConfiguration(host: "127.0.0.1", port: 0, databaseURL: database.url, databasePoolSize: 2),
                identity: DeviceIdentityConfiguration(trustRoots: [ca.certificate])
            ),
            logger: logger,
            metrics: MDMMetrics(),
            onServerRunning: reporter.report
        )
        let id = "json-\(UUID().uuidString)"
        try await withRunningApplication(app, reporter: reporter) { port in
            // No identity: refused with 400 and logged once, at the edge.
            var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)/mdm")
            request.method = .PUT
            request.headers.add(name: "X-Request-ID", value: id)
            request.body = .bytes(ByteBuffer(string: "<plist/>"))
            let response = try await HTTPClient.shared.execute(request, timeout: TestStack.requestTimeout)
            #expect(response.status == .badRequest)
        }
        let logged = lines.withLock { $0 }
        #expect(!logged.isEmpty)
        var refusal: [String: Any]?
        for line in logged {
            #expect(line.hasSuffix("\n") && line.dropLast().firstIndex(of: "\n") == nil, "one object per line")
            let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            for key in ["timestamp", "level", "label", "message", "metadata"] {
                #expect(object[key] != nil, "\(key) missing in \(line)")
            }
            let metadata = object["metadata"] as? [String: Any]
            if metadata?[LogKey.requestID] as? String == id { refusal = object }
        }
        let refused = try #require(refusal, "the refusal is logged with the request ID: \(logged)")
        #expect(refused["level"] as? String == "notice")
        #expect(refused["label"] as? String == "swiftmdm.command")
    }

    @Test func jsonLogHandlerEscapesAndNestsMetadata() throws {
        let lines = Locked<[String]>([])
        let sink = LogLineSink { bytes in lines.withLock { $0.append(String(decoding: bytes, as: UTF8.self)) } }
        var logger = Logger(label: "escape\"test") { label in
            LineLogHandler(label: label, level: .trace, format: .json, sink: sink)
        }
        logger[metadataKey: "outer"] = "kept"
        logger.warning(
            "quote \" backslash \\ newline \n tab \t bell \u{7} é",
            metadata: ["nested": ["list": ["a", "b"], "inner": "x"], "outer": "overridden"]
        )
        let line = try #require(lines.withLock { $0.first })
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        #expect(object["message"] as? String == "quote \" backslash \\ newline \n tab \t bell \u{7} é")
        #expect(object["label"] as? String == "escape\"test")
        #expect(object["level"] as? String == "warning")
        let metadata = try #require(object["metadata"] as? [String: Any])
        #expect(metadata["outer"] as? String == "overridden")
        let nested = try #require(metadata["nested"] as? [String: Any])
        #expect(nested["list"] as? [String] == ["a", "b"])
        let timestamp = try #require(object["timestamp"] as? String)
        #expect(timestamp.count == 24 && timestamp.hasSuffix("Z"), "RFC 3339 with milliseconds: \(timestamp)")
    }

    @Test func textLogLinesCarryMetadataSetBeforehandOnOneLine() throws {
        let lines = Locked<[String]>([])
        let sink = LogLineSink { bytes in lines.withLock { $0.append(String(decoding: bytes, as: UTF8.self)) } }
        var logger = Logger(label: "swiftmdm.command") { label in
            LogSetup.makeHandler(label: label, level: .info, format: .text, sink: sink)
        }
        logger[metadataKey: "request-id"] = "r-1"
        logger[metadataKey: "enrollment-id"] = "UDID\nforged"
        logger.debug("below the level")
        logger.notice("refused\n2026-01-01T00:00:00.000Z info forged: line", metadata: ["status": "Idle"])
        let logged = lines.withLock { $0 }
        #expect(logged.count == 1)
        let line = try #require(logged.first)
        #expect(line.hasSuffix("\n") && line.dropLast().firstIndex(of: "\n") == nil, "one event, one line: \(line)")
        #expect(line.contains(" notice swiftmdm.command: enrollment-id=UDID\\nforged request-id=r-1 status=Idle ["))
        #expect(line.hasSuffix("] refused\\n2026-01-01T00:00:00.000Z info forged: line\n"))
    }

    @Test func invalidLogAndShutdownSettingsNameTheSetting() throws {
        let format = try Settings(arguments: ["--log-format", "xml"], environment: [:])
        #expect(throws: ConfigurationError(setting: "MDM_LOG_FORMAT", problem: "expected text or json, got xml")) {
            try LogSetup.format(format)
        }
        let level = try Settings(arguments: [], environment: ["MDM_LOG_LEVEL": "loud"])
        #expect(throws: ConfigurationError(setting: "MDM_LOG_LEVEL", problem: "unknown level loud")) {
            try LogSetup.level(level)
        }
        #expect(try LogSetup.format(Settings(arguments: [], environment: ["MDM_LOG_FORMAT": "JSON"])) == .json)
        #expect(throws: ConfigurationError.self) {
            try RoleMain.shutdownGrace(Settings(arguments: ["--shutdown-grace-seconds", "1e300"], environment: [:]))
        }
        #expect(try RoleMain.shutdownGrace(Settings(arguments: [], environment: [:])) == .seconds(25))
    }

    @Test func prometheusReaderRejectsMalformedText() throws {
        #expect(throws: PrometheusText.ParseError.self) { try PrometheusText("metric{label=unquoted} 1") }
        #expect(throws: PrometheusText.ParseError.self) { try PrometheusText("metric 1 2 3") }
        #expect(throws: PrometheusText.ParseError.self) { try PrometheusText("9metric 1") }
        let text = try PrometheusText(
            """
            # TYPE a_total counter
            a_total{x="1",y="q\\"uote"} 3
            a_total{x="2"} 4.5
            b +Inf
            """)
        #expect(text.sum("a_total") == 7.5)
        #expect(text.sum("a_total", where: ["y": "q\"uote"]) == 3)
        #expect(text.types["a_total"] == "counter")
    }

    // MARK: Helpers

    func scrape(_ baseURL: String) async throws -> PrometheusText {
        let response = try await HTTPClient.shared.execute(
            HTTPClientRequest(url: baseURL + "/metrics"), timeout: TestStack.requestTimeout)
        #expect(response.status == .ok)
        #expect(response.headers.first(name: "Content-Type")?.hasPrefix("text/plain; version=0.0.4") == true)
        let body = try await response.body.collect(upTo: 16 << 20)
        return try PrometheusText(String(buffer: body))
    }

    func requestID(_ url: String, sending id: String) async throws -> String? {
        var request = HTTPClientRequest(url: url)
        request.headers.add(name: "X-Request-ID", value: id)
        let response = try await HTTPClient.shared.execute(request, timeout: TestStack.requestTimeout)
        _ = try await response.body.collect(upTo: 1 << 20)
        return response.headers.first(name: "X-Request-ID")
    }
}
