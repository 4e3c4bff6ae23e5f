import MDMTestSupport
import Testing

@Suite("WatchedProcess")
struct WatchedProcessTests {
    /// Regression: a program that ends at once could be reported as never started, when its
    /// exit was seen before the watchdog's pid line was read (`chown` in a CI run).
    @Test func programsThatEndAtOnceAreReportedAsRunAndEnded() async throws {
        try await withThrowingTaskGroup(of: ProcessExit.self) { group in
            for index in 0..<40 {
                group.addTask {
                    try await runTool(
                        index.isMultiple(of: 2) ? ["true"] : ["false"],
                        environment: ["PATH": "/usr/bin:/bin"]
                    ).exit
                }
            }
            var exits: [ProcessExit] = []
            for try await exit in group { exits.append(exit) }
            #expect(exits.filter { $0 == .exited(0) }.count == 20)
            #expect(exits.filter { $0 == .exited(1) }.count == 20)
        }
    }
}
