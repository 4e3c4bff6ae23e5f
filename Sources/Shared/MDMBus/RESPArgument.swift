import NIOCore

/// One argument of a command. Redis receives every command as an array of bulk strings, so an
/// argument is text, bytes or an integer written in decimal.
package struct RESPArgument: Sendable, Hashable {
    private enum Storage: Sendable, Hashable {
        case string(String)
        case bytes(ByteBuffer)
        case integer(Int)
    }

    private let storage: Storage

    package static func string(_ value: String) -> RESPArgument {
        RESPArgument(storage: .string(value))
    }

    package static func bytes(_ value: ByteBuffer) -> RESPArgument {
        RESPArgument(storage: .bytes(value))
    }

    package static func integer(_ value: Int) -> RESPArgument {
        RESPArgument(storage: .integer(value))
    }

    /// Upper bound of the encoded size of this argument, for sizing the output buffer.
    fileprivate var estimatedEncodedSize: Int {
        switch storage {
        case .string(let value): value.utf8.count + 16
        case .bytes(let value): value.readableBytes + 16
        case .integer: 40
        }
    }

    fileprivate func write(to buffer: inout ByteBuffer) {
        switch storage {
        case .string(let value):
            buffer.writeRESPHeader(UInt8(ascii: "$"), value.utf8.count)
            buffer.writeString(value)
        case .bytes(let value):
            buffer.writeRESPHeader(UInt8(ascii: "$"), value.readableBytes)
            buffer.writeImmutableBuffer(value)
        case .integer(let value):
            buffer.writeRESPHeader(UInt8(ascii: "$"), ByteBuffer.decimalDigitCount(value))
            buffer.writeDecimal(value)
        }
        buffer.writeCRLF()
    }
}

extension RESPArgument: ExpressibleByStringLiteral {
    package init(stringLiteral value: String) {
        self.storage = .string(value)
    }
}

extension RESPArgument: ExpressibleByIntegerLiteral {
    package init(integerLiteral value: Int) {
        self.storage = .integer(value)
    }
}

extension RESPArgument: CustomStringConvertible {
    package var description: String {
        switch storage {
        case .string(let value): value
        case .bytes(let value): "<\(value.readableBytes) bytes>"
        case .integer(let value): String(value)
        }
    }
}

extension ByteBuffer {
    /// Writes `command` the way clients send commands: an array of bulk strings.
    package mutating func writeRESPCommand(_ command: [RESPArgument]) {
        writeRESPHeader(UInt8(ascii: "*"), command.count)
        for argument in command {
            argument.write(to: &self)
        }
    }

    /// The encoded size of `command` is at most this; used to allocate the buffer once.
    package static func estimatedRESPCommandSize(_ command: [RESPArgument]) -> Int {
        var size = 16
        for argument in command {
            size += argument.estimatedEncodedSize
        }
        return size
    }

    fileprivate mutating func writeRESPHeader(_ type: UInt8, _ count: Int) {
        writeInteger(type)
        writeDecimal(count)
        writeCRLF()
    }

    fileprivate mutating func writeCRLF() {
        writeInteger(UInt16(0x0D0A))
    }

    /// Writes `value` in ASCII decimal without going through `String`.
    fileprivate mutating func writeDecimal(_ value: Int) {
        let digits = Self.decimalDigitCount(value)
        let start = writerIndex
        writeRepeatingByte(UInt8(ascii: "-"), count: digits)
        var remaining = value.magnitude
        var position = start + digits - 1
        repeat {
            setInteger(UInt8(ascii: "0") + UInt8(remaining % 10), at: position)
            remaining /= 10
            position -= 1
        } while remaining > 0
    }

    /// Characters needed to write `value` in decimal, including a minus sign.
    fileprivate static func decimalDigitCount(_ value: Int) -> Int {
        var count = value < 0 ? 2 : 1
        var remaining = value.magnitude
        while remaining >= 10 {
            remaining /= 10
            count += 1
        }
        return count
    }
}
