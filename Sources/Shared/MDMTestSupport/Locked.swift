import Synchronization

/// A value shared by concurrent test tasks (a `Mutex` that escaping closures can capture).
package final class Locked<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>

    package init(_ value: Value) {
        mutex = Mutex(value)
    }

    package func withLock<Result: Sendable>(_ body: (inout sending Value) throws -> sending Result) rethrows -> Result {
        try mutex.withLock(body)
    }

    package var value: Value {
        mutex.withLock { $0 }
    }
}
