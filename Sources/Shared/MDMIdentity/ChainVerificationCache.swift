import Foundation
import Synchronization
import X509

/// Remembers certificates whose chain already verified, so a device's every request pays only for
/// its signature check. Keyed by SHA-256 of the certificate's DER; an entry is used only within
/// the validity window of the whole chain it verified with.
final class ChainVerificationCache: Sendable {
    struct Entry: Sendable {
        var identity: DeviceIdentity
        var certificate: Certificate
        /// The latest `notValidBefore` in the verified chain.
        var validFrom: Date
        /// The earliest `notValidAfter` in the verified chain.
        var validUntil: Date
    }

    private let capacity: Int
    private let entries: Mutex<[[UInt8]: Entry]>

    init(capacity: Int) {
        self.capacity = max(0, capacity)
        self.entries = Mutex([:])
    }

    func entry(sha256: [UInt8], at time: Date) -> Entry? {
        guard capacity > 0 else {
            return nil
        }
        return entries.withLock { entries in
            guard let entry = entries[sha256] else {
                return nil
            }
            guard entry.validFrom <= time, time <= entry.validUntil else {
                entries[sha256] = nil
                return nil
            }
            return entry
        }
    }

    func insert(_ entry: Entry) {
        guard capacity > 0 else {
            return
        }
        entries.withLock { entries in
            if entries.count >= capacity, entries[entry.identity.sha256] == nil {
                // Drop an arbitrary entry (expired ones go when next looked up): its device re-verifies
                // its chain once on its next request, which costs less than tracking recency on every hit.
                entries.remove(at: entries.startIndex)
            }
            entries[entry.identity.sha256] = entry
        }
    }

    var count: Int {
        entries.withLock { $0.count }
    }
}
