import NIOCore

/// An incremental RESP2 parser.
///
/// Each call consumes every complete element it can and keeps the arrays still being filled
/// on a stack, so a large reply arriving in many small reads is parsed in time linear in its
/// size (re-parsing from the start on every read would be quadratic). A scalar element is
/// consumed only once all of it is present.
package struct RESPParser: Sendable {
    /// Longest simple string, error or header line accepted.
    package var maximumLineLength = 64 * 1024
    /// Redis's own default for `proto-max-bulk-len`.
    package var maximumBulkLength = 512 * 1024 * 1024
    /// Stream replies nest four deep; anything far deeper is not a reply from Redis.
    package var maximumDepth = 32

    private struct PartialArray: Sendable {
        var expectedCount: Int
        var elements: [RESPValue]
    }

    private enum Token {
        case value(RESPValue)
        case arrayHeader(count: Int)
    }

    private var openArrays: [PartialArray] = []

    package init() {}

    /// Whether part of a value has been consumed and its remainder is still awaited.
    package var isInsideValue: Bool {
        !openArrays.isEmpty
    }

    /// The next complete value, or `nil` when `buffer` holds no complete value yet. Consumed
    /// bytes are removed from `buffer`; call again with more bytes appended to continue.
    ///
    /// - Throws: `RedisError.protocolViolation` for input that is not RESP2. The parser (and
    ///   the connection) cannot continue after that.
    package mutating func next(from buffer: inout ByteBuffer) throws -> RESPValue? {
        while let token = try readToken(from: &buffer) {
            var completed: RESPValue
            switch token {
            case .arrayHeader(let count):
                guard openArrays.count < maximumDepth else {
                    throw RedisError.protocolViolation("arrays nested deeper than \(maximumDepth) levels")
                }
                // The count comes from the peer: do not trust it for allocation.
                var elements: [RESPValue] = []
                elements.reserveCapacity(min(count, 1024))
                openArrays.append(PartialArray(expectedCount: count, elements: elements))
                continue
            case .value(let value):
                completed = value
            }
            while !openArrays.isEmpty {
                let last = openArrays.count - 1
                openArrays[last].elements.append(completed)
                guard openArrays[last].elements.count == openArrays[last].expectedCount else {
                    break
                }
                completed = .array(openArrays.removeLast().elements)
            }
            if openArrays.isEmpty {
                return completed
            }
        }
        return nil
    }

    private func readToken(from buffer: inout ByteBuffer) throws -> Token? {
        let start = buffer.readerIndex
        guard let type = buffer.getInteger(at: start, as: UInt8.self) else {
            return nil
        }
        guard let lineEnd = try findLineEnd(in: buffer, from: start + 1) else {
            return nil
        }
        let lineStart = start + 1
        let lineLength = lineEnd - lineStart
        // After the line and its CRLF.
        let afterLine = lineEnd + 2
        switch type {
        case UInt8(ascii: "+"):
            let text = buffer.getString(at: lineStart, length: lineLength) ?? ""
            buffer.moveReaderIndex(to: afterLine)
            return .value(.simpleString(text))
        case UInt8(ascii: "-"):
            let message = buffer.getString(at: lineStart, length: lineLength) ?? ""
            buffer.moveReaderIndex(to: afterLine)
            return .value(.error(message))
        case UInt8(ascii: ":"):
            let value = try parseInteger(buffer, at: lineStart, length: lineLength, what: "integer")
            buffer.moveReaderIndex(to: afterLine)
            return .value(.integer(value))
        case UInt8(ascii: "$"):
            let length = try parseInteger(buffer, at: lineStart, length: lineLength, what: "bulk string length")
            if length == -1 {
                buffer.moveReaderIndex(to: afterLine)
                return .value(.bulkString(nil))
            }
            guard length >= 0, length <= maximumBulkLength else {
                throw RedisError.protocolViolation("bulk string length \(length) is out of range")
            }
            let end = afterLine + length
            guard buffer.writerIndex >= end + 2 else {
                return nil
            }
            guard buffer.getInteger(at: end, as: UInt16.self) == 0x0D0A else {
                throw RedisError.protocolViolation("bulk string of \(length) bytes is not followed by CRLF")
            }
            let bytes = buffer.getSlice(at: afterLine, length: length) ?? ByteBuffer()
            buffer.moveReaderIndex(to: end + 2)
            return .value(.bulkString(bytes))
        case UInt8(ascii: "*"):
            let count = try parseInteger(buffer, at: lineStart, length: lineLength, what: "array length")
            buffer.moveReaderIndex(to: afterLine)
            switch count {
            case -1: return .value(.array(nil))
            case 0: return .value(.array([]))
            case 1...: return .arrayHeader(count: count)
            default: throw RedisError.protocolViolation("array length \(count) is out of range")
            }
        default:
            throw RedisError.protocolViolation(
                "unexpected type byte 0x\(String(type, radix: 16)) at the start of a value")
        }
    }

    /// Index of the CR ending the line that starts at `index`, or `nil` when the line is not
    /// complete yet.
    private func findLineEnd(in buffer: ByteBuffer, from index: Int) throws -> Int? {
        let available = buffer.writerIndex - index
        let searched = min(available, maximumLineLength + 1)
        let offset = buffer.withUnsafeReadableBytes { bytes in
            let lineStart = index - buffer.readerIndex
            return bytes[lineStart..<(lineStart + searched)].firstIndex(of: 0x0D).map { $0 - lineStart }
        }
        guard let offset else {
            if available > maximumLineLength {
                throw RedisError.protocolViolation("line longer than \(maximumLineLength) bytes")
            }
            return nil
        }
        let lineEnd = index + offset
        guard let next = buffer.getInteger(at: lineEnd + 1, as: UInt8.self) else {
            return nil
        }
        guard next == 0x0A else {
            throw RedisError.protocolViolation("carriage return not followed by line feed")
        }
        return lineEnd
    }

    private func parseInteger(_ buffer: ByteBuffer, at index: Int, length: Int, what: String) throws -> Int {
        let value = buffer.withUnsafeReadableBytes { bytes -> Int? in
            let digits = bytes[(index - buffer.readerIndex)..<(index - buffer.readerIndex + length)]
            var result = 0
            var negative = false
            var sawDigit = false
            for (position, byte) in zip(digits.indices, digits) {
                if position == digits.startIndex, byte == UInt8(ascii: "-") {
                    negative = true
                    continue
                }
                guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else {
                    return nil
                }
                let digit = Int(byte - UInt8(ascii: "0"))
                let (shifted, overflowA) = result.multipliedReportingOverflow(by: 10)
                let (next, overflowB) =
                    negative ? shifted.subtractingReportingOverflow(digit) : shifted.addingReportingOverflow(digit)
                guard !overflowA, !overflowB else {
                    return nil
                }
                result = next
                sawDigit = true
            }
            return sawDigit ? result : nil
        }
        guard let value else {
            let text = buffer.getString(at: index, length: min(length, 32)) ?? ""
            throw RedisError.protocolViolation("\(what) is not a decimal integer: \"\(text)\"")
        }
        return value
    }
}
