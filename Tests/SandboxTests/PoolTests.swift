import ControlPlane
import Foundation
import Testing
import Wire

#if canImport(Glibc)
import Glibc
#endif

@Suite("Worker pool")
struct PoolTests {
    @Test("keeps minSpare sandboxed workers warm and uses each for one job only")
    func warmAndSingleUse() async throws {
        let pool = try TestPool.make(minSpare: 2, max: 4)
        try await pool.pool.start()
        // Generous: on a loaded machine two sandboxed spawns can take seconds.
        #expect(await waitUntil(.seconds(60)) { await pool.pool.counts.idle == 2 })
        let workers = await pool.pool.snapshot()
        #expect(workers.allSatisfy { $0.layers.contains("seccomp") && $0.layers.contains("landlock") })
        let a = await pool.run(["true"])
        let b = await pool.run(["true"])
        #expect(a.succeeded && b.succeeded)
        #expect(a.workerPid != b.workerPid)
        #expect(await waitUntil(.seconds(60)) { await pool.pool.counts.idle == 2 })
        await pool.cleanup()
    }

    @Test("a long job's worker is replaced while it runs: the pool keeps minSpare warm, not one fewer")
    func replacedDuringLongJob() async throws {
        let pool = try TestPool.make(minSpare: 2, max: 4)
        try await pool.pool.start()
        #expect(await waitUntil(.seconds(60)) { await pool.pool.counts.idle == 2 })
        let long = Task { await pool.run(["sleep", "12"]) }
        #expect(await waitUntil { await pool.pool.counts.busy == 1 })
        // The replacement comes 20 ms into the job, long before it ends.
        #expect(await waitUntil(.seconds(10)) { await pool.pool.counts.idle == 2 })
        #expect(await pool.pool.counts.busy == 1, "while the long job still runs")
        _ = await long.value
        await pool.cleanup()
    }

    @Test("two live workers never share a uid: a long job's uid is skipped while short jobs cycle through the range",
          .enabled(if: geteuid() == 0, "workers get uids of their own only under a root control plane"))
    func uidsNotShared() async throws {
        let pool = try TestPool.make(minSpare: 1, max: 3, uidCount: 4)
        try await pool.pool.start()
        let long = Task { await pool.run(["sleep", "3"]) }
        #expect(await waitUntil { await pool.pool.counts.busy == 1 })
        for _ in 0..<12 {
            #expect(await pool.run(["true"]).succeeded)
            let uids = await pool.pool.snapshot().filter { $0.state != "exited" }.map(\.uid)
            #expect(Set(uids).count == uids.count, "live workers share a uid: \(uids)")
        }
        #expect(await long.value.succeeded)
        await pool.cleanup()
    }

    @Test("a worker killed mid-job fails that job with the cause and is replaced")
    func killedMidJob() async throws {
        let pool = try TestPool.make(minSpare: 1, max: 3)
        try await pool.pool.start()
        let job = Task { await pool.run(["sleep", "30"]) }
        #expect(await waitUntil { await pool.pool.snapshot().contains { $0.state == "busy" } })
        let busy = try #require(await pool.pool.snapshot().first { $0.state == "busy" })
        kill(busy.pid, SIGKILL)
        let outcome = await job.value
        #expect(outcome.failure?.contains("killed by SIGKILL") == true, "\(outcome.failure ?? "")")
        #expect(await waitUntil { await pool.pool.counts.idle == 1 })
        await pool.cleanup()
    }

    @Test("cancelling a job kills its worker and every process in it")
    func cancel() async throws {
        let pool = try TestPool.make(minSpare: 1, max: 2)
        try await pool.pool.start()
        var options = WorkerPool.JobOptions(jobId: "cancel-me")
        options.keepWorkspace = false
        let job = Task { await pool.pool.run(ExecSpec(argv: ["sh", "-c", "sleep 60 & sleep 60"], timeoutMs: 60_000), options: options) }
        #expect(await waitUntil { await pool.pool.snapshot().contains { $0.jobId == "cancel-me" } })
        #expect(await pool.pool.cancel(jobId: "cancel-me"))
        let outcome = await job.value
        #expect(outcome.failure?.hasPrefix("cancelled") == true, "\(outcome.failure ?? "")")
        await pool.cleanup()
    }

    @Test("100 killed workers leave no zombies, and the pool refills")
    func noZombies() async throws {
        let pool = try TestPool.make(minSpare: 4, max: 8)
        try await pool.pool.start()
        var killed = Set<Int32>()
        while killed.count < 100 {
            for worker in await pool.pool.snapshot() where worker.state == "idle" && !killed.contains(worker.pid) && killed.count < 100 {
                kill(worker.pid, SIGKILL)
                killed.insert(worker.pid)
            }
            try await Task.sleep(for: .milliseconds(5))
        }
        // Refilled: four idle workers, none of them one of those killed (a kill is
        // asynchronous, so a just-killed spare can still look idle for a moment).
        #expect(await waitUntil(.seconds(20)) {
            let workers = await pool.pool.snapshot()
            return workers.filter { $0.state == "idle" }.count == 4 && !workers.contains { killed.contains($0.pid) }
        })
        #expect(await waitUntil { zombieChildren(among: killed).isEmpty })
        let outcome = await pool.run(["true"])
        #expect(outcome.succeeded)
        await pool.cleanup()
        #expect(await waitUntil { zombieChildren(among: killed).isEmpty })
    }

    @Test("200 concurrent jobs on 4 workers all complete, with at most 4 alive at once")
    func concurrency() async throws {
        // Exec'd workers, 200 of them in turn, on a host the other suites load too:
        // a handshake bound well past the quick one other tests use. The test is about concurrency.
        let pool = try TestPool.make(minSpare: 2, max: 4) { $0.handshakeTimeout = .seconds(30) }
        try await pool.pool.start()
        let watcher = Task {
            var peak = 0
            while !Task.isCancelled {
                peak = max(peak, await pool.pool.counts.live)
                try? await Task.sleep(for: .milliseconds(2))
            }
            return peak
        }
        let outcomes = await withTaskGroup(of: JobOutcome.self) { group in
            for i in 0..<200 { group.addTask { await pool.run(["sh", "-c", "echo \(i)"]) } }
            var all: [JobOutcome] = []
            for await o in group { all.append(o) }
            return all
        }
        watcher.cancel()
        let peak = await watcher.value
        #expect(outcomes.count == 200)
        let failed = outcomes.filter { !$0.succeeded }.map { $0.failure ?? "no failure named" }
        #expect(failed.isEmpty, "\(failed)")
        #expect(Set(outcomes.compactMap { $0.result?.stdout }).count == 200)
        #expect(peak <= 4)
        await pool.cleanup()
    }
}
