extension RedisCommandSending {
    /// `PING`; returns the reply text (`PONG`).
    package func ping() async throws -> String {
        let reply = try await send(["PING"])
        guard let text = reply.string else {
            throw RedisError.unexpectedReply(command: "PING", reply: reply.description)
        }
        return text
    }

    /// `DEL`; returns how many of `keys` existed.
    @discardableResult
    package func del(_ keys: [String]) async throws -> Int {
        guard !keys.isEmpty else {
            return 0
        }
        return try await integer(["DEL"] + keys.map { .string($0) }, command: "DEL")
    }

    /// `XADD stream [MAXLEN ~ n] * field value …`; returns the new entry's ID.
    ///
    /// - Parameter approximateMaxLength: Trims the stream to about this many entries (`~`:
    ///   Redis trims whole macro nodes only, which is cheap).
    @discardableResult
    package func xadd(
        stream: String,
        fields: [(name: String, value: RESPArgument)],
        approximateMaxLength: Int? = nil
    ) async throws -> String {
        var command: [RESPArgument] = ["XADD", .string(stream)]
        command.reserveCapacity(6 + 2 * fields.count)
        if let approximateMaxLength {
            command += ["MAXLEN", "~", .integer(approximateMaxLength)]
        }
        command.append("*")
        for field in fields {
            command.append(.string(field.name))
            command.append(field.value)
        }
        let reply = try await send(command)
        guard let id = reply.string else {
            throw RedisError.unexpectedReply(command: "XADD", reply: reply.description)
        }
        return id
    }

    /// `XGROUP CREATE stream group startID [MKSTREAM]`; returns `false` when the group already
    /// existed (`BUSYGROUP`), which is not an error for callers that just need it to exist.
    @discardableResult
    package func xgroupCreate(
        stream: String,
        group: String,
        startID: String = "$",
        makeStream: Bool = true
    ) async throws -> Bool {
        var command: [RESPArgument] = ["XGROUP", "CREATE", .string(stream), .string(group), .string(startID)]
        if makeStream {
            command.append("MKSTREAM")
        }
        do {
            _ = try await send(command)
            return true
        } catch RedisError.server(let message) where message.hasPrefix("BUSYGROUP") {
            return false
        }
    }

    /// `XREADGROUP GROUP group consumer [COUNT n] [BLOCK ms] STREAMS stream id`.
    ///
    /// - Parameters:
    ///   - id: `>` for entries never delivered to the group; `0` for this consumer's own
    ///     pending entries (after a restart).
    ///   - block: Wait this long for new entries (zero: indefinitely); `nil` returns at once.
    ///     On a `RedisClient` a blocking read runs on a dedicated connection.
    /// - Returns: The entries read; empty when none arrived in time.
    package func xreadgroup(
        group: String,
        consumer: String,
        stream: String,
        id: String = ">",
        count: Int? = nil,
        block: Duration? = nil
    ) async throws -> [StreamEntry] {
        var command: [RESPArgument] = ["XREADGROUP", "GROUP", .string(group), .string(consumer)]
        if let count {
            command += ["COUNT", .integer(count)]
        }
        if let block {
            command += ["BLOCK", .integer(block.redisMilliseconds)]
        }
        command += ["STREAMS", .string(stream), .string(id)]
        let reply =
            if let block {
                try await sendBlocking(command, block: block)
            } else {
                try await send(command)
            }
        if reply.isNull {
            return []
        }
        guard let streams = reply.array else {
            throw RedisError.unexpectedReply(command: "XREADGROUP", reply: reply.description)
        }
        var entries: [StreamEntry] = []
        for streamReply in streams {
            guard let pair = streamReply.array, pair.count == 2, let list = pair[1].array else {
                throw RedisError.unexpectedReply(command: "XREADGROUP", reply: reply.description)
            }
            entries.reserveCapacity(entries.count + list.count)
            for entry in list {
                guard let parsed = try StreamEntry(reply: entry, command: "XREADGROUP") else {
                    continue
                }
                entries.append(parsed)
            }
        }
        return entries
    }

    /// `XACK stream group id …`; returns how many entries were acknowledged.
    @discardableResult
    package func xack(stream: String, group: String, ids: [String]) async throws -> Int {
        guard !ids.isEmpty else {
            return 0
        }
        return try await integer(["XACK", .string(stream), .string(group)] + ids.map { .string($0) }, command: "XACK")
    }

    /// `XAUTOCLAIM stream group consumer min-idle start [COUNT n]`: takes over entries another
    /// consumer read and has not acknowledged for at least `minIdle` (its replica died).
    /// `XCLAIM stream group consumer minIdle id … JUSTID`: takes (or keeps) the entries for
    /// `consumer` and resets their idle time; returns the IDs it claimed.
    @discardableResult
    package func xclaimJustID(
        stream: String,
        group: String,
        consumer: String,
        minIdle: Duration,
        ids: [String]
    ) async throws -> [String] {
        guard !ids.isEmpty else { return [] }
        let command: [RESPArgument] =
            ["XCLAIM", .string(stream), .string(group), .string(consumer), .integer(minIdle.redisMilliseconds)]
            + ids.map { .string($0) } + ["JUSTID"]
        let reply = try await send(command)
        guard let list = reply.array else {
            throw RedisError.unexpectedReply(command: "XCLAIM", reply: reply.description)
        }
        return list.compactMap(\.string)
    }

    package func xautoclaim(
        stream: String,
        group: String,
        consumer: String,
        minIdle: Duration,
        start: String = "0-0",
        count: Int? = nil
    ) async throws -> StreamAutoclaim {
        var command: [RESPArgument] = [
            "XAUTOCLAIM", .string(stream), .string(group), .string(consumer),
            .integer(minIdle.redisMilliseconds), .string(start),
        ]
        if let count {
            command += ["COUNT", .integer(count)]
        }
        let reply = try await send(command)
        // Redis 6.2: [next, entries]; Redis 7: [next, entries, deleted IDs].
        guard let parts = reply.array, parts.count == 2 || parts.count == 3, let nextStart = parts[0].string,
            let list = parts[1].array
        else {
            throw RedisError.unexpectedReply(command: "XAUTOCLAIM", reply: reply.description)
        }
        var result = StreamAutoclaim(nextStart: nextStart, entries: [], deletedIDs: [])
        result.entries.reserveCapacity(list.count)
        for entry in list {
            // Redis 6.2 reports a claimed entry that no longer exists as a null.
            guard let parsed = try StreamEntry(reply: entry, command: "XAUTOCLAIM") else {
                continue
            }
            if parsed.isDeleted {
                result.deletedIDs.append(parsed.id)
            } else {
                result.entries.append(parsed)
            }
        }
        if parts.count == 3 {
            guard let deleted = parts[2].array else {
                throw RedisError.unexpectedReply(command: "XAUTOCLAIM", reply: reply.description)
            }
            for id in deleted {
                guard let id = id.string else {
                    throw RedisError.unexpectedReply(command: "XAUTOCLAIM", reply: reply.description)
                }
                result.deletedIDs.append(id)
            }
        }
        return result
    }

    /// `XPENDING stream group`: how many entries the group has delivered and not acknowledged.
    package func xpendingSummary(stream: String, group: String) async throws -> StreamPendingSummary {
        let reply = try await send(["XPENDING", .string(stream), .string(group)])
        guard let parts = reply.array, parts.count == 4, let count = parts[0].integer else {
            throw RedisError.unexpectedReply(command: "XPENDING", reply: reply.description)
        }
        var consumers: [StreamPendingSummary.Consumer] = []
        for consumer in parts[3].array ?? [] {
            guard let pair = consumer.array, pair.count == 2, let name = pair[0].string,
                let pending = pair[1].integer
            else {
                throw RedisError.unexpectedReply(command: "XPENDING", reply: reply.description)
            }
            consumers.append(StreamPendingSummary.Consumer(name: name, pending: pending))
        }
        return StreamPendingSummary(
            count: count,
            smallestID: parts[1].string,
            greatestID: parts[2].string,
            consumers: consumers
        )
    }

    /// `XLEN stream`; 0 when the stream does not exist.
    package func xlen(stream: String) async throws -> Int {
        try await integer(["XLEN", .string(stream)], command: "XLEN")
    }

    /// `XINFO GROUPS stream`: the stream's consumer groups with their backlog (`lag`).
    package func xinfoGroups(stream: String) async throws -> [StreamGroupInfo] {
        let reply = try await send(["XINFO", "GROUPS", .string(stream)])
        guard let groups = reply.array else {
            throw RedisError.unexpectedReply(command: "XINFO GROUPS", reply: reply.description)
        }
        return try groups.map { group in
            // Each group is a flat list of alternating names and values.
            guard let items = group.array, items.count.isMultiple(of: 2) else {
                throw RedisError.unexpectedReply(command: "XINFO GROUPS", reply: reply.description)
            }
            var values: [String: RESPValue] = [:]
            for index in stride(from: 0, to: items.count, by: 2) {
                if let name = items[index].string {
                    values[name] = items[index + 1]
                }
            }
            guard let name = values["name"]?.string, let consumers = values["consumers"]?.integer,
                let pending = values["pending"]?.integer, let lastDeliveredID = values["last-delivered-id"]?.string
            else {
                throw RedisError.unexpectedReply(command: "XINFO GROUPS", reply: reply.description)
            }
            return StreamGroupInfo(
                name: name,
                consumers: consumers,
                pending: pending,
                lastDeliveredID: lastDeliveredID,
                entriesRead: values["entries-read"]?.integer,
                lag: values["lag"]?.integer
            )
        }
    }

    private func integer(_ command: [RESPArgument], command name: String) async throws -> Int {
        let reply = try await send(command)
        guard case .integer(let value) = reply else {
            throw RedisError.unexpectedReply(command: name, reply: reply.description)
        }
        return value
    }
}

extension StreamEntry {
    /// Parses `[id, [field, value, …]]`; `[id, nil]` (deleted while pending) gives an entry
    /// without fields, and a bare null gives `nil`.
    fileprivate init?(reply: RESPValue, command: String) throws {
        if reply.isNull {
            return nil
        }
        guard let pair = reply.array, pair.count == 2, let id = pair[0].string else {
            throw RedisError.unexpectedReply(command: command, reply: reply.description)
        }
        if pair[1].isNull {
            self.init(id: id, fields: [])
            return
        }
        guard let flat = pair[1].array, flat.count.isMultiple(of: 2) else {
            throw RedisError.unexpectedReply(command: command, reply: reply.description)
        }
        var fields: [StreamField] = []
        fields.reserveCapacity(flat.count / 2)
        for index in stride(from: 0, to: flat.count, by: 2) {
            guard let name = flat[index].string, let value = flat[index + 1].bytes else {
                throw RedisError.unexpectedReply(command: command, reply: reply.description)
            }
            fields.append(StreamField(name: name, value: value))
        }
        self.init(id: id, fields: fields)
    }
}

extension Duration {
    /// Whole milliseconds for a Redis argument, rounded up so that a positive duration never
    /// becomes 0 (which means "forever" for `BLOCK`).
    var redisMilliseconds: Int {
        let (seconds, attoseconds) = components
        let attosecondsPerMillisecond: Int64 = 1_000_000_000_000_000
        let milliseconds = seconds * 1000 + (attoseconds + attosecondsPerMillisecond - 1) / attosecondsPerMillisecond
        return Int(max(0, milliseconds))
    }
}
