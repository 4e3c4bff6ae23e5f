import Foundation
import Logging
import Synchronization

/// Where log lines go: one `write` per line, serialised, so lines from concurrent
/// requests never interleave.
package final class LogLineSink: Sendable {
    private let writeLine: @Sendable ([UInt8]) -> Void
    private let lock = Mutex(())

    package init(_ writeLine: @escaping @Sendable ([UInt8]) -> Void) {
        self.writeLine = writeLine
    }

    /// Standard error, where every role logs.
    package static let standardError = LogLineSink { bytes in
        bytes.withUnsafeBytes { buffer in
            guard let base = buffer.baseAddress else { return }
            var offset = 0
            while offset < buffer.count {
                let written = write(STDERR_FILENO, base + offset, buffer.count - offset)
                guard written > 0 else { return }
                offset += written
            }
        }
    }

    func emit(_ line: [UInt8]) {
        lock.withLock { _ in writeLine(line) }
    }
}

/// Every role's log handler: one line per event, as `MDM_LOG_FORMAT` says.
///
/// - `text`: `<timestamp> <level> <label>: <key=value …> [<source>] <message>`, line breaks in
///   values and messages escaped so a value a device sent cannot start a forged line.
/// - `json`: one JSON object with `timestamp` (RFC 3339, UTC, milliseconds), `level`,
///   `label`, `message` and `metadata` (an object; nested metadata stays nested), for log
///   shippers that should not parse text.
///
/// Metadata is rendered only when a line is written: every request sets a few keys (request
/// ID, enrollment, status) and most requests log nothing, while swift-log's
/// `StreamLogHandler` re-renders all metadata on every set (about 2 % of the machine in the
/// poll benchmark).
package struct LineLogHandler: LogHandler {
    package var logLevel: Logger.Level
    package var metadata: Logger.Metadata = [:]
    package var metadataProvider: Logger.MetadataProvider?
    private let label: String
    private let format: LogFormat
    private let sink: LogLineSink

    package init(
        label: String,
        level: Logger.Level = .info,
        format: LogFormat,
        sink: LogLineSink = .standardError,
        metadataProvider: Logger.MetadataProvider? = nil
    ) {
        self.label = label
        self.logLevel = level
        self.format = format
        self.sink = sink
        self.metadataProvider = metadataProvider
    }

    package subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    package func log(event: LogEvent) {
        var merged = metadata
        if let provided = metadataProvider?.get() {
            merged.merge(provided) { _, provided in provided }
        }
        if let extra = event.metadata {
            merged.merge(extra) { _, extra in extra }
        }
        let line =
            switch format {
            case .text: textLine(event, metadata: merged)
            case .json: jsonLine(event, metadata: merged)
            }
        sink.emit(Array(line.utf8))
    }

    private func jsonLine(_ event: LogEvent, metadata: Logger.Metadata) -> String {
        var line = "{\"timestamp\":"
        JSONText.appendString(Self.timestamp(), to: &line)
        line += ",\"level\":"
        JSONText.appendString(event.level.rawValue, to: &line)
        line += ",\"label\":"
        JSONText.appendString(label, to: &line)
        line += ",\"message\":"
        JSONText.appendString(event.message.description, to: &line)
        line += ",\"metadata\":"
        JSONText.appendValue(.dictionary(metadata), to: &line)
        return line + "}\n"
    }

    private func textLine(_ event: LogEvent, metadata: Logger.Metadata) -> String {
        var line = Self.timestamp() + " " + event.level.rawValue + " " + label + ":"
        for key in metadata.keys.sorted() {
            if let value = metadata[key] {
                line += " " + key + "=" + Self.oneLine(value.description)
            }
        }
        return line + " [" + event.source + "] " + Self.oneLine(event.message.description) + "\n"
    }

    /// Line breaks escaped.
    static func oneLine(_ text: String) -> String {
        guard text.contains(where: \.isNewline) else { return text }
        var escaped = ""
        for character in text {
            switch character {
            case "\n": escaped += "\\n"
            case "\r", "\r\n": escaped += "\\r"
            default: escaped += character.isNewline ? " " : String(character)
            }
        }
        return escaped
    }

    /// `2026-11-22T06:58:01.123Z`. Built by hand: a shared `DateFormatter` is not Sendable and
    /// a new one per line is slow.
    static func timestamp(_ date: Date = Date()) -> String {
        var seconds = time_t(date.timeIntervalSince1970.rounded(.down))
        let milliseconds = Int((date.timeIntervalSince1970 - Double(seconds)) * 1000)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func pad(_ value: Int32, _ width: Int) -> String {
            let digits = String(value)
            return String(repeating: "0", count: max(0, width - digits.count)) + digits
        }
        return "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1, 2))-\(pad(parts.tm_mday, 2))"
            + "T\(pad(parts.tm_hour, 2)):\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2))"
            + ".\(pad(Int32(min(999, max(0, milliseconds))), 3))Z"
    }
}

/// Just enough JSON writing for log lines and the APNs body, without an encoder per use.
package enum JSONText {
    static func appendValue(_ value: Logger.Metadata.Value, to output: inout String) {
        switch value {
        case .string(let string):
            appendString(string, to: &output)
        case .stringConvertible(let convertible):
            appendString(convertible.description, to: &output)
        case .array(let values):
            output += "["
            for (index, element) in values.enumerated() {
                if index > 0 { output += "," }
                appendValue(element, to: &output)
            }
            output += "]"
        case .dictionary(let dictionary):
            output += "{"
            // Sorted so the same metadata always reads the same way.
            for (index, key) in dictionary.keys.sorted().enumerated() {
                if index > 0 { output += "," }
                appendString(key, to: &output)
                output += ":"
                if let element = dictionary[key] {
                    appendValue(element, to: &output)
                }
            }
            output += "}"
        }
    }

    /// `string` as a JSON string literal, quotes included.
    package static func appendString(_ string: String, to output: inout String) {
        output += "\""
        for scalar in string.unicodeScalars {
            switch scalar {
            case "\"": output += "\\\""
            case "\\": output += "\\\\"
            case "\n": output += "\\n"
            case "\r": output += "\\r"
            case "\t": output += "\\t"
            case let control where control.value < 0x20:
                let hex = String(control.value, radix: 16)
                output += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default:
                output.unicodeScalars.append(scalar)
            }
        }
        output += "\""
    }
}
