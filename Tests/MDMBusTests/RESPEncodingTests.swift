import MDMBus
import NIOCore
import Testing

@Suite
struct RESPEncodingTests {
    @Test
    func commandsAreWrittenAsArraysOfBulkStrings() {
        var buffer = ByteBuffer()
        buffer.writeRESPCommand(["XADD", "mdm:push:requests", "*", "udid", .string("é")])
        #expect(
            String(buffer: buffer)
                == "*5\r\n$4\r\nXADD\r\n$17\r\nmdm:push:requests\r\n$1\r\n*\r\n$4\r\nudid\r\n$2\r\né\r\n"
        )
    }

    @Test(arguments: [0, 7, 10, -1, -10, 123_456_789, Int.max, Int.min])
    func integerArgumentsAreWrittenInDecimal(value: Int) {
        var buffer = ByteBuffer()
        buffer.writeRESPCommand([.integer(value)])
        let digits = String(value)
        #expect(String(buffer: buffer) == "*1\r\n$\(digits.utf8.count)\r\n\(digits)\r\n")
    }

    @Test
    func byteArgumentsAreWrittenVerbatim() {
        var buffer = ByteBuffer()
        buffer.writeRESPCommand([.bytes(ByteBuffer(bytes: [0x00, 0x0D, 0x0A, 0xFF]))])
        #expect(Array(buffer.readableBytesView) == Array("*1\r\n$4\r\n".utf8) + [0x00, 0x0D, 0x0A, 0xFF, 0x0D, 0x0A])
    }

    @Test
    func encodedCommandsParseBackToTheirArguments() throws {
        let command: [RESPArgument] = ["SET", "key", .integer(-5), .bytes(ByteBuffer(string: "v"))]
        var buffer = ByteBuffer()
        buffer.writeRESPCommand(command)
        #expect(buffer.readableBytes <= ByteBuffer.estimatedRESPCommandSize(command))
        var parser = RESPParser()
        let value = try #require(try parser.next(from: &buffer))
        #expect(value == .array([.bulk("SET"), .bulk("key"), .bulk("-5"), .bulk("v")]))
    }
}
