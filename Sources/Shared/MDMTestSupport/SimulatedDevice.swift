import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1

/// How a simulated device presents its identity.
package enum DeviceTransport: Sendable, Equatable {
    /// `Mdm-Signature` over every body, as a device talking to the server directly.
    case signature(TestSignatureStyle)
    /// The certificate in a header, as a TLS-terminating proxy forwards it.
    case forwardedHeader(name: String, escapedPEM: Bool)
}

/// A reply as the device saw it.
package struct DeviceReply: Sendable {
    package var status: Int
    package var body: Data
    package var headers: [(name: String, value: String)] = []

    /// The first value of a header, by case-insensitive name.
    package func header(_ name: String) -> String? {
        headers.first { $0.name.lowercased() == name.lowercased() }?.value
    }

    /// The reply body decoded as a property list dictionary (a command, a bootstrap token…).
    package func plist() throws -> [String: Any] {
        let value = try PropertyListSerialization.propertyList(from: body, options: [], format: nil)
        guard let dictionary = value as? [String: Any] else { throw SimulatedDeviceError.notADictionary }
        return dictionary
    }

    /// `CommandUUID` of the command in this reply, if it carries one.
    package func commandUUID() throws -> String? {
        guard !body.isEmpty else { return nil }
        return try plist()["CommandUUID"] as? String
    }
}

package enum SimulatedDeviceError: Error {
    case notADictionary
}

/// A device for tests and the load generator: its own identity certificate, signing what it
/// sends like a real device, speaking to CheckinService and CommandService over real HTTP.
package struct SimulatedDevice: Sendable {
    package var udid: String
    package var serialNumber: String
    package var identity: TestDeviceIdentity
    package var checkinURL: String
    package var commandURL: String
    package var transport: DeviceTransport
    package var topic: String
    package var pushMagic: String
    package var token: Data
    private let httpClient: HTTPClient

    package init(
        udid: String = UUID().uuidString,
        identity: TestDeviceIdentity,
        checkinURL: String,
        commandURL: String,
        transport: DeviceTransport = .signature(.modern),
        topic: String = "com.apple.mgmt.External.test-topic",
        httpClient: HTTPClient = .shared
    ) {
        self.udid = udid
        self.serialNumber = "SIM" + String(udid.filter(\.isLetter).prefix(9)).uppercased()
        self.identity = identity
        self.checkinURL = checkinURL
        self.commandURL = commandURL
        self.transport = transport
        self.topic = topic
        self.pushMagic = UUID().uuidString
        self.token = Data((0..<32).map { _ in UInt8.random(in: 0...255) })
        self.httpClient = httpClient
    }

    // MARK: Check-ins

    package func authenticate() async throws -> DeviceReply {
        try await checkin([
            "MessageType": "Authenticate", "UDID": udid, "Topic": topic, "SerialNumber": serialNumber,
            "ProductName": "iPhone15,2", "OSVersion": "18.1", "BuildVersion": "22B83",
        ])
    }

    /// `TokenUpdate` on the device channel, or on a user channel when `userID` is given.
    package func tokenUpdate(userID: String? = nil, userShortName: String? = nil) async throws -> DeviceReply {
        var message: [String: Any] = [
            "MessageType": "TokenUpdate", "UDID": udid, "Topic": topic, "PushMagic": pushMagic, "Token": token,
        ]
        if let userID {
            message["UserID"] = userID
            message["UserShortName"] = userShortName ?? "user"
        } else {
            message["UnlockToken"] = Data("unlock-\(udid)".utf8)
        }
        return try await checkin(message)
    }

    /// Authenticate then TokenUpdate, failing unless both answer 200.
    package func enroll() async throws {
        for reply in [try await authenticate(), try await tokenUpdate()] where reply.status != 200 {
            throw SimulatedDeviceFailure(step: "enroll", status: reply.status)
        }
    }

    package func checkOut() async throws -> DeviceReply {
        try await checkin(["MessageType": "CheckOut", "UDID": udid, "Topic": topic])
    }

    /// Sends a check-in message given as a dictionary (the device's `UDID` is not added).
    package func checkin(_ message: [String: Any]) async throws -> DeviceReply {
        let body = try PropertyListSerialization.data(fromPropertyList: message, format: .xml, options: 0)
        return try await send(body: body, to: checkinURL, contentType: "application/x-apple-aspen-mdm-checkin")
    }

    // MARK: Command reports

    package func idle(userID: String? = nil) async throws -> DeviceReply {
        try await report(status: "Idle", commandUUID: nil, userID: userID)
    }

    package func acknowledge(_ commandUUID: String, userID: String? = nil) async throws -> DeviceReply {
        try await report(status: "Acknowledged", commandUUID: commandUUID, userID: userID)
    }

    package func notNow(_ commandUUID: String, userID: String? = nil) async throws -> DeviceReply {
        try await report(status: "NotNow", commandUUID: commandUUID, userID: userID)
    }

    package func report(status: String, commandUUID: String?, userID: String? = nil) async throws -> DeviceReply {
        try await send(body: reportBody(status: status, commandUUID: commandUUID, userID: userID), to: commandURL)
    }

    /// A report body built from a template: cheaper than a plist encoder, so the load
    /// generator measures the server rather than itself.
    package func reportBody(status: String, commandUUID: String?, userID: String? = nil) -> Data {
        var keys = "<key>Status</key><string>\(status)</string><key>UDID</key><string>\(udid)</string>"
        if let commandUUID { keys += "<key>CommandUUID</key><string>\(commandUUID)</string>" }
        if let userID { keys += "<key>UserID</key><string>\(userID)</string>" }
        return Data(
            """
            <?xml version="1.0" encoding="UTF-8"?>
            <!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
            <plist version="1.0"><dict>\(keys)</dict></plist>
            """.utf8
        )
    }

    /// A command report with its identity header computed now, to be sent later: the load
    /// generator signs before it measures. (A device's identical `Idle` body signs to the same
    /// value every time: RSA PKCS #1 v1.5 without signed attributes is deterministic.)
    package func signedReport(status: String, commandUUID: String?, userID: String? = nil) throws -> SignedReport {
        let body = reportBody(status: status, commandUUID: commandUUID, userID: userID)
        return SignedReport(body: body, identityHeader: try identityHeader(for: body))
    }

    // MARK: Transport

    /// Sends `body` with this device's identity and returns what came back.
    package func send(
        body: Data,
        to url: String,
        contentType: String = "application/x-apple-aspen-mdm",
        method: HTTPMethod = .PUT
    ) async throws -> DeviceReply {
        var request = HTTPClientRequest(url: url)
        request.method = method
        request.headers.add(name: "Content-Type", value: contentType)
        let identityHeader = try identityHeader(for: body)
        request.headers.add(name: identityHeader.name, value: identityHeader.value)
        if !body.isEmpty || method != .GET { request.body = .bytes(ByteBuffer(bytes: body)) }
        let response = try await httpClient.execute(request, timeout: .seconds(30))
        let reply = try await response.body.collect(upTo: 64 * 1024 * 1024)
        return DeviceReply(
            status: Int(response.status.code),
            body: Data(reply.readableBytesView),
            headers: response.headers.map { ($0.name, $0.value) }
        )
    }

    /// `Mdm-Signature` over `body`, or the forwarded certificate header.
    private func identityHeader(for body: Data) throws -> SignedReport.Header {
        switch transport {
        case .signature(let style):
            SignedReport.Header(name: "Mdm-Signature", value: try identity.mdmSignature(for: Array(body), style: style))
        case .forwardedHeader(let name, let escapedPEM):
            SignedReport.Header(name: name, value: escapedPEM ? identity.escapedPEMHeader : identity.rfc9440Header)
        }
    }
}

/// A report body and the header that proves the device's identity for it.
package struct SignedReport: Sendable {
    package struct Header: Sendable {
        package var name: String
        package var value: String
    }

    package var body: Data
    package var identityHeader: Header
}

package struct SimulatedDeviceFailure: Error, CustomStringConvertible {
    package var step: String
    package var status: Int
    package var description: String { "\(step) answered \(status)" }
}
