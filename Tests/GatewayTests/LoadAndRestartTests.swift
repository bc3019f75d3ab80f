import Foundation
import SkelmClient
import Testing
import Workflow

#if canImport(Glibc)
import Glibc
#endif

@Suite("Load, drain and restart")
struct LoadAndRestartTests {
    @Test("200 concurrent async runs with maxConcurrentRuns 8 all complete, none lost, at most 8 busy workers")
    func boundedConcurrency() async throws {
        let gw = try await TestGateway.started(workflows: TestWorkflows.all, config: """
            server: { host: 127.0.0.1, port: 0, maxConcurrentRuns: 8 }
            workers: { minSpare: 2, max: 12, uidBase: UIDBASE }
            defaults: { permissions: { allowedExecutables: [echo] } }
            """)
        defer { gw.cleanupLater() }
        let ids = try await withThrowingTaskGroup(of: String.self) { group in
            for i in 0..<200 {
                group.addTask { try await gw.run("hello", ["name": .string("n\(i)")], sync: false)["id"]!.stringValue! }
            }
            return try await group.reduce(into: [String]()) { $0.append($1) }
        }
        #expect(Set(ids).count == 200)
        var finished = 0
        for id in ids {
            let run = try await gw.waitForStatus(id, ["succeeded", "failed", "cancelled"], timeout: .seconds(120))
            if run["status"] == "succeeded" { finished += 1 } else { Issue.record("run \(id): \(run)") }
        }
        #expect(finished == 200)
        let pool = try await gw.get("/v1/workers").json
        let peak = pool?["peakBusy"]
        #expect(peak.map { if case let .number(n) = $0 { n <= 8 && n >= 1 } else { false } } == true, "peak busy \(String(describing: peak))")
        let list = try await gw.get("/runs?limit=1000").json?["runs"].list ?? []
        #expect(list.count == 200)
    }

    @Test("a SIGKILLed gateway's unfinished run resumes from its checkpoint on the next start")
    func resumeAfterCrash() async throws {
        let gw = try await TestGateway.started(workflows: TestWorkflows.all)
        defer { gw.cleanupLater() }
        // Long enough that a loaded machine still sees it running, and kills it there.
        let run = try await gw.run("slow", ["seconds": "15"], sync: false)
        let id = run["id"]!.stringValue!
        // Wait until `first` is checkpointed and `nap` is running, then kill the gateway outright.
        var napping = false
        for _ in 0..<1500 where !napping {
            let steps = try await gw.get("/runs/\(id)").json?["steps"].list ?? []
            napping = steps.contains(where: { $0["path"] == "nap" && $0["status"] == "running" })
            if !napping { try await Task.sleep(for: .milliseconds(10)) }
        }
        try #require(napping, "nap never seen running")
        let seen = ContinuousClock.now
        let killed = await gw.stop(signal: SIGKILL)
        // Should it fail again under load: how long the kill took, and how it ended.
        let killing = "killed \(ContinuousClock.now - seen) after nap was seen running, exit status \(killed)"
        try await gw.start()
        let done = try await gw.waitForStatus(id, ["succeeded", "failed"], timeout: .seconds(60))
        #expect(done["status"] == "succeeded", "\(done)")
        #expect(done["segments"] == 2, "\(killing)")
        let events = try await gw.get("/runs/\(id)/events", headers: [("Accept", "application/json")]).json?["events"].list ?? []
        let types = events.map { $0["type"]?.stringValue ?? "" }
        #expect(types.contains("run.resumed"))
        // The checkpointed step is not run again; the interrupted one is.
        #expect(events.filter { $0["type"] == "step.started" && $0["step"] == "first" }.count == 1)
        #expect(events.filter { $0["type"] == "step.started" && $0["step"] == "nap" }.count == 2)
        let seqs = events.compactMap { e -> Int? in if case let .number(n)? = e["seq"] { Int(n) } else { nil } }
        #expect(seqs == Array(1...seqs.count))
    }

    @Test("SIGTERM drains: a running run finishes before the gateway exits 0")
    func drain() async throws {
        let gw = try await TestGateway.started(workflows: TestWorkflows.all)
        defer { gw.cleanupLater() }
        let run = try await gw.run("slow", ["seconds": "1"], sync: false)
        let id = run["id"]!.stringValue!
        try await Task.sleep(for: .milliseconds(300))
        #expect(await gw.stop() == 0)
        #expect(!FileManager.default.fileExists(atPath: gw.stateDir + "/gateway.json"))
        try await gw.start()
        let after = try await gw.get("/runs/\(id)").json
        #expect(after?["status"] == "succeeded")
        #expect(after?["segments"] == 1)
    }
}
