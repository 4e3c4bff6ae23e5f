import Foundation
import Logging

/// `MDM_LOG_FORMAT=text` (the default): `<timestamp> <level> <label>: <key=value …> [<source>]
/// <message>`, one line per event. Metadata is rendered only when a line is written: every
/// request sets a few keys (request ID, enrollment, status) and most requests log nothing,
/// so swift-log's `StreamLogHandler`, which re-renders all metadata on every set, costs more.
package struct TextLogHandler: LogHandler {
    package var logLevel: Logger.Level
    package var metadata: Logger.Metadata = [:]
    package var metadataProvider: Logger.MetadataProvider?
    private let label: String
    private let sink: LogLineSink

    package init(
        label: String,
        level: Logger.Level = .info,
        sink: LogLineSink = .standardError,
        metadataProvider: Logger.MetadataProvider? = nil
    ) {
        self.label = label
        self.logLevel = level
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
        var line = JSONLogHandler.timestamp() + " " + event.level.rawValue + " " + label + ":"
        for key in merged.keys.sorted() {
            if let value = merged[key] {
                line += " " + key + "=" + Self.oneLine(value.description)
            }
        }
        line += " [" + event.source + "] " + Self.oneLine(event.message.description) + "\n"
        sink.emit(Array(line.utf8))
    }

    /// Line breaks escaped, so a value a device sent cannot start a forged line.
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
}
