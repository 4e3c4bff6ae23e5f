import NIOCore

/// One RESP2 value, as Redis sends it.
///
/// Bulk strings stay bytes (`ByteBuffer`): stream field values are opaque payloads and are
/// only turned into `String` where a caller asks for text.
package enum RESPValue: Sendable, Hashable {
    case simpleString(String)
    /// An error reply (`-ERR …`). `RedisConnection.send` throws it as `RedisError.server`.
    case error(String)
    case integer(Int)
    /// `nil` is the null bulk string (`$-1`).
    case bulkString(ByteBuffer?)
    /// `nil` is the null array (`*-1`).
    case array([RESPValue]?)

    /// Whether this is the null bulk string or the null array.
    package var isNull: Bool {
        switch self {
        case .bulkString(nil), .array(nil): true
        default: false
        }
    }

    /// The text of a simple or bulk string (bulk strings decoded as UTF-8).
    package var string: String? {
        switch self {
        case .simpleString(let text): text
        case .bulkString(let bytes?): String(buffer: bytes)
        default: nil
        }
    }

    /// The bytes of a bulk string, or of a simple string.
    package var bytes: ByteBuffer? {
        switch self {
        case .bulkString(let bytes?): bytes
        case .simpleString(let text): ByteBuffer(string: text)
        default: nil
        }
    }

    /// An integer reply, or a string holding a decimal integer (Redis sends some counts as bulk
    /// strings, e.g. per-consumer counts in `XPENDING`).
    package var integer: Int? {
        switch self {
        case .integer(let value): value
        case .simpleString, .bulkString: string.flatMap { Int($0) }
        default: nil
        }
    }

    /// The elements of a non-null array.
    package var array: [RESPValue]? {
        if case .array(let elements?) = self {
            return elements
        }
        return nil
    }
}

extension RESPValue: CustomStringConvertible {
    /// A short, single-line rendering for error messages and logs; long payloads are cut.
    package var description: String {
        switch self {
        case .simpleString(let text): "+\(text)"
        case .error(let message): "-\(message)"
        case .integer(let value): ":\(value)"
        case .bulkString(nil), .array(nil): "(nil)"
        case .bulkString(let bytes?):
            bytes.readableBytes <= 64
                ? "\"\(String(buffer: bytes))\""
                : "\"\(String(buffer: bytes.getSlice(at: bytes.readerIndex, length: 64) ?? bytes))…\" "
                    + "(\(bytes.readableBytes) bytes)"
        case .array(let elements?):
            elements.count <= 8
                ? "[" + elements.map(\.description).joined(separator: ", ") + "]"
                : "[" + elements.prefix(8).map(\.description).joined(separator: ", ")
                    + ", … (\(elements.count) elements)]"
        }
    }
}
