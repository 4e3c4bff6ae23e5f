import NIOCore

/// One field of a stream entry.
package struct StreamField: Sendable, Hashable {
    package var name: String
    package var value: ByteBuffer

    package init(name: String, value: ByteBuffer) {
        self.name = name
        self.value = value
    }
}

/// An entry read from a stream.
package struct StreamEntry: Sendable, Hashable {
    package var id: String
    /// Empty for an entry that was deleted from the stream while still pending (Redis returns
    /// it without fields); acknowledge it and move on.
    package var fields: [StreamField]

    package init(id: String, fields: [StreamField]) {
        self.id = id
        self.fields = fields
    }

    package var isDeleted: Bool {
        fields.isEmpty
    }

    /// The value of the first field called `name`.
    package subscript(field name: String) -> ByteBuffer? {
        fields.first { $0.name == name }?.value
    }

    /// The value of the first field called `name`, as UTF-8 text.
    package func string(_ name: String) -> String? {
        self[field: name].map { String(buffer: $0) }
    }
}

/// The reply to `XAUTOCLAIM`.
package struct StreamAutoclaim: Sendable, Hashable {
    /// Where to continue the scan; `0-0` once the whole pending list has been scanned.
    package var nextStart: String
    /// The entries now owned by the claiming consumer.
    package var entries: [StreamEntry]
    /// Entries that were pending but no longer exist; Redis 7 removes them from the pending
    /// list. Redis 6.2 reports them only as nulls, so this is empty there.
    package var deletedIDs: [String]

    package init(nextStart: String, entries: [StreamEntry], deletedIDs: [String]) {
        self.nextStart = nextStart
        self.entries = entries
        self.deletedIDs = deletedIDs
    }
}

/// The reply to `XPENDING key group` (the summary form).
package struct StreamPendingSummary: Sendable, Hashable {
    package struct Consumer: Sendable, Hashable {
        package var name: String
        package var pending: Int

        package init(name: String, pending: Int) {
            self.name = name
            self.pending = pending
        }
    }

    package var count: Int
    package var smallestID: String?
    package var greatestID: String?
    package var consumers: [Consumer]

    package init(count: Int, smallestID: String?, greatestID: String?, consumers: [Consumer]) {
        self.count = count
        self.smallestID = smallestID
        self.greatestID = greatestID
        self.consumers = consumers
    }
}

/// One consumer group, from `XINFO GROUPS`.
package struct StreamGroupInfo: Sendable, Hashable {
    package var name: String
    package var consumers: Int
    /// Delivered and not yet acknowledged.
    package var pending: Int
    package var lastDeliveredID: String
    /// Redis 7: entries delivered to the group so far; `nil` on 6.2 or when unknown.
    package var entriesRead: Int?
    /// Redis 7: entries not yet delivered to the group; `nil` on 6.2 or when Redis cannot tell
    /// (after deletions or trimming past the group).
    package var lag: Int?

    package init(
        name: String,
        consumers: Int,
        pending: Int,
        lastDeliveredID: String,
        entriesRead: Int? = nil,
        lag: Int? = nil
    ) {
        self.name = name
        self.consumers = consumers
        self.pending = pending
        self.lastDeliveredID = lastDeliveredID
        self.entriesRead = entriesRead
        self.lag = lag
    }
}
