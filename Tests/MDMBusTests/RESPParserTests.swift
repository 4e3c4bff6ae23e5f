import MDMBus
import NIOCore
import Testing

@Suite
struct RESPParserTests {
    @Test
    func simpleStringsErrorsAndIntegersParse() throws {
        #expect(try parseAll("+OK\r\n") == [.simpleString("OK")])
        #expect(try parseAll("-ERR unknown command 'FOO'\r\n") == [.error("ERR unknown command 'FOO'")])
        #expect(try parseAll(":0\r\n:42\r\n:-7\r\n") == [.integer(0), .integer(42), .integer(-7)])
        #expect(try parseAll(":9223372036854775807\r\n:-9223372036854775808\r\n") == [.integer(.max), .integer(.min)])
    }

    @Test
    func bulkStringsKeepTheirBytesEvenWithCRLFInside() throws {
        let values = try parseAll("$5\r\nhello\r\n$4\r\na\r\nb\r\n")
        #expect(values == [.bulkString(ByteBuffer(string: "hello")), .bulkString(ByteBuffer(string: "a\r\nb"))])
        var binary = ByteBuffer(string: "$3\r\n")
        binary.writeBytes([0x00, 0xFF, 0x0D])
        binary.writeString("\r\n")
        var parser = RESPParser()
        #expect(try parser.next(from: &binary) == .bulkString(ByteBuffer(bytes: [0x00, 0xFF, 0x0D])))
    }

    @Test
    func nullBulkStringAndNullArrayParseAsNull() throws {
        let values = try parseAll("$-1\r\n*-1\r\n")
        #expect(values == [.bulkString(nil), .array(nil)])
        #expect(values.allSatisfy { $0.isNull })
    }

    @Test
    func emptyBulkStringAndEmptyArrayAreNotNull() throws {
        let values = try parseAll("$0\r\n\r\n*0\r\n")
        #expect(values == [.bulkString(ByteBuffer()), .array([])])
        #expect(!values.contains { $0.isNull })
    }

    @Test
    func nestedArraysParse() throws {
        // The shape of an XREADGROUP reply: [[stream, [[id, [field, value]]]]].
        let text =
            "*1\r\n*2\r\n$1\r\ns\r\n*2\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n*2\r\n$3\r\n2-0\r\n$-1\r\n"
        let entries: [RESPValue] = [
            .array([.bulk("1-0"), .array([.bulk("f"), .bulk("v")])]),
            .array([.bulk("2-0"), .bulkString(nil)]),
        ]
        #expect(try parseAll(text) == [.array([.array([.bulk("s"), .array(entries)])])])
        #expect(
            try parseAll("*3\r\n*0\r\n*-1\r\n*1\r\n:1\r\n") == [
                .array([.array([]), .array(nil), .array([.integer(1)])])
            ])
    }

    @Test
    func valueFedOneByteAtATimeParsesOnceComplete() throws {
        let text = "*3\r\n$5\r\nhello\r\n:12\r\n*2\r\n+OK\r\n-ERR no\r\n"
        var parser = RESPParser()
        var buffer = ByteBuffer()
        var results: [RESPValue] = []
        for byte in text.utf8 {
            buffer.writeInteger(byte)
            if let value = try parser.next(from: &buffer) {
                results.append(value)
            }
        }
        #expect(results == [.array([.bulk("hello"), .integer(12), .array([.simpleString("OK"), .error("ERR no")])])])
        #expect(buffer.readableBytes == 0)
        #expect(!parser.isInsideValue)
    }

    @Test
    func manyRepliesInOneBufferParseInOrder() throws {
        var text = ""
        for index in 0..<1000 {
            text += index.isMultiple(of: 2) ? ":\(index)\r\n" : "$\(String(index).utf8.count)\r\n\(index)\r\n"
        }
        let values = try parseAll(text)
        #expect(values.count == 1000)
        #expect(values.map(\.integer) == (0..<1000).map { $0 })
    }

    /// A 10k-entry XREADGROUP reply arriving in 13-byte reads: every complete element is
    /// consumed as it arrives, so the parser never re-reads what came before (linear, not
    /// quadratic, in the size of the reply).
    @Test
    func largeArrayInSmallChunksIsConsumedAsItArrives() throws {
        let count = 10_000
        var reply = ByteBuffer(string: "*1\r\n*2\r\n$8\r\npush:req\r\n*\(count)\r\n")
        for index in 0..<count {
            let id = "1700000000000-\(index)"
            reply.writeString("*2\r\n$\(id.utf8.count)\r\n\(id)\r\n*4\r\n$4\r\nudid\r\n$8\r\nABCD1234\r\n")
            reply.writeString("$5\r\ntopic\r\n$12\r\ncom.apple.mg\r\n")
        }
        var parser = RESPParser()
        var buffer = ByteBuffer()
        var result: RESPValue?
        var largestBacklog = 0
        while reply.readableBytes > 0 {
            var chunk = reply.readSlice(length: min(13, reply.readableBytes)) ?? ByteBuffer()
            buffer.writeBuffer(&chunk)
            if let value = try parser.next(from: &buffer) {
                result = value
            }
            largestBacklog = max(largestBacklog, buffer.readableBytes)
            // As ByteToMessageHandler does: the parsed bulk strings are slices of this buffer,
            // so appending to it without reclaiming would copy everything read so far.
            buffer.discardReadBytes()
        }
        // Never more than one partial element (the longest is the 23-byte entry ID) plus a chunk.
        #expect(largestBacklog < 48)
        let entries = try #require(result?.array?.first?.array?[1].array)
        #expect(entries.count == count)
        #expect(entries.last?.array?.first?.string == "1700000000000-\(count - 1)")
    }

    @Test(arguments: [
        "?what\r\n",
        ":12a\r\n",
        ":\r\n",
        ":99999999999999999999\r\n",
        "$abc\r\n",
        "$-2\r\n",
        "$3\r\nabcXY",
        "*-2\r\n",
        "+OK\rX",
        "*1\r\n!\r\n",
    ])
    func malformedInputIsAProtocolViolation(input: String) throws {
        var parser = RESPParser()
        var buffer = ByteBuffer(string: input)
        #expect(throws: RedisError.self) {
            while try parser.next(from: &buffer) != nil {}
        }
    }

    @Test
    func unterminatedLinesAndExcessiveNestingAreProtocolViolations() throws {
        var parser = RESPParser()
        parser.maximumLineLength = 16
        var longLine = ByteBuffer(string: "+" + String(repeating: "a", count: 40))
        #expect(throws: RedisError.self) { try parser.next(from: &longLine) }

        var deep = RESPParser()
        var nested = ByteBuffer(string: String(repeating: "*1\r\n", count: deep.maximumDepth + 1))
        #expect(throws: RedisError.self) { try deep.next(from: &nested) }

        var tooLong = RESPParser()
        var hugeBulk = ByteBuffer(string: "$\(tooLong.maximumBulkLength + 1)\r\n")
        #expect(throws: RedisError.self) { try tooLong.next(from: &hugeBulk) }
    }

    private func parseAll(_ text: String) throws -> [RESPValue] {
        var parser = RESPParser()
        var buffer = ByteBuffer(string: text)
        var values: [RESPValue] = []
        while let value = try parser.next(from: &buffer) {
            values.append(value)
        }
        #expect(buffer.readableBytes == 0)
        return values
    }
}

extension RESPValue {
    static func bulk(_ text: String) -> RESPValue {
        .bulkString(ByteBuffer(string: text))
    }
}
