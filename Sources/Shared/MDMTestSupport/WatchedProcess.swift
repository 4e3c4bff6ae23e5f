import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// How a child process ended.
package enum ProcessExit: Sendable, Equatable, CustomStringConvertible {
    case exited(Int32)
    case signalled(Int32)

    package var description: String {
        switch self {
        case .exited(let status): "exit status \(status)"
        case .signalled(let signal): "signal \(signal)"
        }
    }
}

package enum WatchedProcessError: Error, CustomStringConvertible {
    case timedOut(String)
    case exited(String, ProcessExit, output: String)

    package var description: String {
        switch self {
        case .timedOut(let what): "timed out: \(what)"
        case .exited(let what, let exit, let output): "\(what): process ended (\(exit)); output:\n\(output)"
        }
    }
}

/// A server (or any program) started by a test, under a small shell watchdog that SIGKILLs it
/// as soon as the test process closes the watchdog's standard input — by `kill()`, by exiting
/// or by crashing — so nothing a test starts outlives its run.
///
/// The program's standard output and error are appended to `logFile` (kept for diagnostics)
/// and can be awaited (`waitForOutput`). Signals go to the program itself, not the shell.
package final class WatchedProcess: Sendable {
    /// Starts the program in the background and reports its pid on the shell's standard error;
    /// when standard input reaches EOF, kills it. Exits with the program's status (128 + N for
    /// a program ended by signal N).
    private static let watchdog = """
        exec 3<&0
        "$@" 2>&1 &
        server=$!
        echo "pid $server" >&2
        { read -r _ <&3; kill -9 "$server" 2>/dev/null; } &
        watcher=$!
        exec 3<&-
        wait "$server"
        status=$?
        kill -9 "$watcher" 2>/dev/null
        exit "$status"
        """

    private struct State {
        var output = ""
        var control = ""
        /// The watchdog's control pipe reached its end: a pid not read by then never comes.
        var controlClosed = false
        var pid: Int32?
        var pidWaiters: [CheckedContinuation<Int32?, Never>] = []
        var exit: ProcessExit?
        var exitWaiters: [(id: UInt64, continuation: CheckedContinuation<ProcessExit?, Never>)] = []
        var outputWaiters: [(id: UInt64, text: String, continuation: CheckedContinuation<Bool, Never>)] = []
        var nextWaiterID: UInt64 = 0
    }

    /// Output kept in memory for `waitForOutput`; older output is still in `logFile`.
    private static let outputLimit = 1 << 20

    package let name: String
    package let logFile: URL
    private let process = Process()
    private let input = Pipe()
    private let log: FileHandle
    private let state = Mutex(State())

    /// Starts `arguments` (the program first, found on `PATH` unless absolute) with exactly
    /// `environment`, and returns once its pid is known.
    package static func start(
        name: String,
        arguments: [String],
        environment: [String: String],
        logFile: URL,
        workingDirectory: URL? = nil
    ) async throws -> WatchedProcess {
        let watched = try WatchedProcess(
            name: name, arguments: arguments, environment: environment, logFile: logFile,
            workingDirectory: workingDirectory)
        guard await watched.pid() != nil else {
            throw WatchedProcessError.exited(
                "\(name) did not start", await watched.waitForExit(), output: watched.output)
        }
        return watched
    }

    private init(
        name: String,
        arguments: [String],
        environment: [String: String],
        logFile: URL,
        workingDirectory: URL?
    ) throws {
        self.name = name
        self.logFile = logFile
        if !FileManager.default.fileExists(atPath: logFile.path) {
            _ = FileManager.default.createFile(atPath: logFile.path, contents: nil)
        }
        log = try FileHandle(forWritingTo: logFile)
        try log.seekToEnd()
        let output = Pipe()
        let control = Pipe()
        // The signal mask of a Swift concurrency thread blocks signals the shell needs
        // (SIGCHLD for `wait`); `env --default-signal` resets them.
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["--default-signal", "/bin/sh", "-c", Self.watchdog, "watchdog"] + arguments
        process.environment = environment
        if let workingDirectory { process.currentDirectoryURL = workingDirectory }
        process.standardInput = input
        process.standardOutput = output
        process.standardError = control
        output.fileHandleForReading.readabilityHandler = { [weak self] handle in
            let data = handle.availableData
            if data.isEmpty { handle.readabilityHandler = nil }
            self?.receivedOutput(data)
        }
        control.fileHandleForReading.readabilityHandler = { [weak self] handle in
            let data = handle.availableData
            if data.isEmpty { handle.readabilityHandler = nil }
            self?.receivedControl(data)
        }
        process.terminationHandler = { [weak self] process in
            let status = process.terminationStatus
            let exit: ProcessExit =
                if process.terminationReason == .uncaughtSignal {
                    .signalled(status)
                } else {
                    status > 128 ? .signalled(status - 128) : .exited(status)
                }
            self?.exited(exit)
        }
        try process.run()
    }

    /// The program's pid, or nil when it never started.
    package func pid() async -> Int32? {
        await withCheckedContinuation { continuation in
            let known = state.withLock { state -> Int32?? in
                if let pid = state.pid { return .some(pid) }
                if state.exit != nil, state.controlClosed { return .some(nil) }
                state.pidWaiters.append(continuation)
                return nil
            }
            if let known { continuation.resume(returning: known) }
        }
    }

    /// Sends `signal` to the program (SIGTERM, SIGKILL, SIGINT…).
    package func send(_ signal: Int32) {
        guard let pid = state.withLock({ $0.exit == nil ? $0.pid : nil }) else { return }
        #if canImport(Glibc)
            _ = Glibc.kill(pid, signal)
        #else
            _ = Darwin.kill(pid, signal)
        #endif
    }

    /// Kills the program (by closing the watchdog's input, as a test crash would) and waits
    /// until it has exited.
    @discardableResult
    package func kill() async -> ProcessExit {
        try? input.fileHandleForWriting.close()
        return await waitForExit()
    }

    /// Waits for the program to end (whether or not the waiting task is cancelled).
    package func waitForExit() async -> ProcessExit {
        while true {
            if let exit = await Task.detached(operation: { await self.exitUnlessCancelled() }).value {
                return exit
            }
        }
    }

    /// Waits for the program to end; nil when the waiting task is cancelled first.
    package func exitUnlessCancelled() async -> ProcessExit? {
        let id = state.withLock { state -> UInt64 in
            state.nextWaiterID += 1
            return state.nextWaiterID
        }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let known = state.withLock { state -> ProcessExit?? in
                    if let exit = state.exit { return .some(exit) }
                    if Task.isCancelled { return .some(nil) }
                    state.exitWaiters.append((id, continuation))
                    return nil
                }
                if let known { continuation.resume(returning: known) }
            }
        } onCancel: {
            let waiter = state.withLock { state -> CheckedContinuation<ProcessExit?, Never>? in
                guard let index = state.exitWaiters.firstIndex(where: { $0.id == id }) else { return nil }
                return state.exitWaiters.remove(at: index).continuation
            }
            waiter?.resume(returning: nil)
        }
    }

    /// Waits for the program to end, at most `timeout`.
    package func waitForExit(timeout: Duration) async throws -> ProcessExit {
        try await withThrowingTaskGroup(of: ProcessExit?.self) { group in
            group.addTask { await self.exitUnlessCancelled() }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return nil
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let exit = first else {
                throw WatchedProcessError.timedOut("\(self.name) did not exit within \(timeout)")
            }
            return exit
        }
    }

    package var exitStatus: ProcessExit? {
        state.withLock { $0.exit }
    }

    /// Output so far (the last megabyte; `logFile` has all of it).
    package var output: String {
        state.withLock { $0.output }
    }

    /// Waits until the program's output contains `text`; false when the program ended first
    /// or `timeout` passed.
    package func waitForOutput(containing text: String, timeout: Duration) async -> Bool {
        let id = state.withLock { state -> UInt64 in
            state.nextWaiterID += 1
            return state.nextWaiterID
        }
        return await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                await withCheckedContinuation { continuation in
                    let known = self.state.withLock { state -> Bool? in
                        if state.output.contains(text) { return true }
                        if state.exit != nil { return false }
                        state.outputWaiters.append((id, text, continuation))
                        return nil
                    }
                    if let known { continuation.resume(returning: known) }
                }
            }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return false
            }
            let first = await group.next() ?? false
            // Release the other waiter whichever way it went.
            let waiter = self.state.withLock { state -> CheckedContinuation<Bool, Never>? in
                guard let index = state.outputWaiters.firstIndex(where: { $0.id == id }) else { return nil }
                return state.outputWaiters.remove(at: index).continuation
            }
            waiter?.resume(returning: false)
            group.cancelAll()
            return first
        }
    }

    private func receivedOutput(_ data: Data) {
        guard !data.isEmpty else { return }
        try? log.write(contentsOf: data)
        let ready = state.withLock { state -> [CheckedContinuation<Bool, Never>] in
            state.output += String(decoding: data, as: UTF8.self)
            if state.output.utf8.count > Self.outputLimit {
                state.output = String(state.output.suffix(Self.outputLimit / 2))
            }
            var ready: [CheckedContinuation<Bool, Never>] = []
            state.outputWaiters.removeAll { waiter in
                guard state.output.contains(waiter.text) else { return false }
                ready.append(waiter.continuation)
                return true
            }
            return ready
        }
        for continuation in ready { continuation.resume(returning: true) }
    }

    private func receivedControl(_ data: Data) {
        let waiters = state.withLock { state -> (Int32?, [CheckedContinuation<Int32?, Never>])? in
            if data.isEmpty {
                // A short program can end before its pid line is read: it is known only now
                // that the pid will never come.
                state.controlClosed = true
                guard state.pid == nil, state.exit != nil else { return nil }
                defer { state.pidWaiters = [] }
                return (nil, state.pidWaiters)
            }
            state.control += String(decoding: data, as: UTF8.self)
            guard state.pid == nil,
                let line = state.control.split(separator: "\n").first(where: { $0.hasPrefix("pid ") }),
                let pid = Int32(line.dropFirst(4))
            else { return nil }
            state.pid = pid
            defer { state.pidWaiters = [] }
            return (pid, state.pidWaiters)
        }
        if let (pid, continuations) = waiters {
            for continuation in continuations { continuation.resume(returning: pid) }
        }
    }

    private func exited(_ exit: ProcessExit) {
        let (exitWaiters, pidWaiters, outputWaiters) = state.withLock { state in
            state.exit = exit
            // Without the pid yet, pid waiters wait for the control pipe's end instead.
            let pidWaiters = state.controlClosed ? state.pidWaiters : []
            defer {
                state.exitWaiters = []
                if state.controlClosed { state.pidWaiters = [] }
                state.outputWaiters = []
            }
            return (state.exitWaiters, pidWaiters, state.outputWaiters.map(\.continuation))
        }
        for waiter in exitWaiters { waiter.continuation.resume(returning: exit) }
        for waiter in pidWaiters { waiter.resume(returning: nil) }
        for waiter in outputWaiters { waiter.resume(returning: false) }
    }
}

/// Runs a short tool (initdb, chown…) to completion and returns its status and output.
package func runTool(
    _ arguments: [String],
    environment: [String: String]? = nil,
    logFile: URL? = nil
) async throws -> (exit: ProcessExit, output: String) {
    let file =
        logFile
        ?? FileManager.default.temporaryDirectory.appendingPathComponent("mdm-tool-\(UUID().uuidString).log")
    defer { if logFile == nil { try? FileManager.default.removeItem(at: file) } }
    let process = try await WatchedProcess.start(
        name: arguments.first ?? "tool",
        arguments: arguments,
        environment: environment ?? ProcessInfo.processInfo.environment,
        logFile: file
    )
    let exit = await process.waitForExit()
    // The output pipe may still hold the last bytes when the exit is observed.
    let output = (try? String(contentsOf: file, encoding: .utf8)) ?? process.output
    return (exit, output)
}
