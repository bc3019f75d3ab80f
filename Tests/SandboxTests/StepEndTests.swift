import ControlPlane
import Foundation
import Testing
import Wire

/// How a step's end is seen: its exit (a pidfd) and its output's end (EOF) come
/// in either order, and neither may be lost or waited past.
@Suite("A step's end")
struct StepEndTests {
    @Test("a step that closes its output and runs on is waited for, and its exit status is kept")
    func closesOutputFirst() async throws {
        let pool = try TestPool.make(minSpare: 1, max: 2)
        try await pool.pool.start()
        let outcome = await pool.run(["sh", "-c", "echo early; exec >&- 2>&-; sleep 0.4; exit 3"])
        let result = try #require(outcome.result, "\(outcome.failure ?? "")")
        #expect(result.stdout == "early\n")
        #expect(result.exitCode == 3)
        #expect(!result.timedOut)
        // It ran on after its output closed: the job was not ended at the EOF.
        #expect(result.durationMs >= 400, "\(result.durationMs) ms")
        await pool.cleanup()
    }

    @Test("a step whose output closes late is still held to its timeout")
    func timeoutAfterOutputCloses() async throws {
        let pool = try TestPool.make(minSpare: 1, max: 2)
        try await pool.pool.start()
        let outcome = await pool.run(["sh", "-c", "exec >&- 2>&-; sleep 30"], timeoutMs: 500)
        #expect(outcome.result?.timedOut == true || outcome.failure?.contains("timed out") == true,
                "\(String(describing: outcome.result)) \(outcome.failure ?? "")")
        await pool.cleanup()
    }

    @Test("a step that exits while its background child holds its output ends without waiting for the child")
    func backgroundChildHoldsOutput() async throws {
        let pool = try TestPool.make(minSpare: 1, max: 2)
        try await pool.pool.start()
        let outcome = await pool.run(["sh", "-c", "sleep 30 & echo done"], timeoutMs: 60_000)
        let result = try #require(outcome.result, "\(outcome.failure ?? "")")
        #expect(result.stdout == "done\n")
        #expect(result.exitCode == 0)
        // The child's 30 s are not waited for: it is killed with the step's group.
        #expect(result.durationMs < 20_000, "\(result.durationMs) ms")
        await pool.cleanup()
    }
}
