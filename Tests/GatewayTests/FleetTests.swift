import Foundation
import PostgresFixture
import SkelmClient
import Synchronization
import Testing
import Workflow

#if canImport(Glibc)
import Glibc
#endif

/// Several real gateways, each with its own state dir, port and worker pool,
/// sharing one PostgreSQL database (a throwaway cluster).
@Suite("Fleet: several gateways, one database", .serialized)
struct FleetTests {
    static let workflows: [String: String] = [
        "work.workflow.yaml": """
            id: work
            steps:
              - { id: first, idempotent: true, exec: { argv: [sh, -c, 'sleep 0.02; echo one'] } }
              - { id: second, idempotent: true, exec: { argv: [echo, two] } }
            """,
        "slow.workflow.yaml": """
            id: slow
            steps:
              - { id: a, exec: { argv: [sh, -c, 'sleep 0.4; echo a'] } }
              - { id: b, exec: { argv: [sh, -c, 'sleep 0.4; echo b'] } }
              - { id: c, exec: { argv: [sh, -c, 'sleep 0.4; echo c'] } }
            """,
        "long.workflow.yaml": """
            id: long
            steps:
              - { id: wait, exec: { argv: [sleep, "15"] } }
            """,
        "deploy.workflow.yaml": ApprovalTests.workflows["deploy.workflow.yaml"]!,
    ]

    struct Fleet {
        let url: String
        let database: String
        var gateways: [TestGateway]

        func sql(_ query: String) async throws -> [String] { try await PostgresCluster.shared.query(query, database: database) }

        func cleanupLater() { for gw in gateways { gw.cleanupLater() } }
    }

    static let server = "{ host: 127.0.0.1, port: 0, maxConcurrentRuns: 8, maxBodyKB: 64, sseHeartbeatSeconds: 1 }"

    static func fleet(_ ids: [String], workflows: [String: String] = FleetTests.workflows, server: String = FleetTests.server) async throws -> Fleet {
        let url = try await PostgresCluster.shared.database()
        let name = String(url.split(separator: "/").last!.split(separator: "?").first!)
        var gateways: [TestGateway] = []
        for id in ids {
            let config = TestGateway.config(server: server) + "\nstorage: { driver: postgres, url: \"\(url)\", poolSize: 6, gatewayId: \(id) }\n"
            gateways.append(try await TestGateway.started(workflows: workflows, config: config))
        }
        return Fleet(url: url, database: name, gateways: gateways)
    }

    /// What the proof's submitters and its killer share.
    final class Load: Sendable {
        let killed = Mutex<Date?>(nil)
        let submitted = Mutex(0)
    }

    @Test("1,000 async runs spread over three gateways complete once each; a gateway SIGKILLed mid-load has its runs finished by the others, no completed step run twice")
    func proof() async throws {
        let fleet = try await Self.fleet(["gw-a", "gw-b", "gw-c"])
        defer { fleet.cleanupLater() }
        let total = 1000
        let c = fleet.gateways[2]
        // C is killed mid-load, once it is running runs and has more queued:
        // after that, what was meant for it goes to A or B. Every submission
        // carries an Idempotency-Key, so one cut short by the kill is sent
        // again elsewhere without making a second run.
        let load = Load()
        let killer = Task {
            for _ in 0..<12_000 {
                if load.submitted.withLock({ $0 }) >= total / 3 {
                    let held = try await fleet.sql("SELECT status, count(*) FROM runs WHERE owner = 'gw-c' AND status IN ('queued', 'running') GROUP BY status ORDER BY status")
                    if held.contains(where: { $0.hasPrefix("running|") }) {
                        load.killed.withLock { $0 = Date() }
                        await c.stop(signal: SIGKILL)
                        return held
                    }
                }
                try await Task.sleep(for: .milliseconds(5))
            }
            return [String]()
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for lane in 0..<24 {
                group.addTask {
                    for i in stride(from: lane, to: total, by: 24) {
                        let body: JSONValue = ["workflow": "work", "input": ["i": .number(Double(i))], "mode": "async"]
                        let headers = [("Idempotency-Key", "proof-\(i)")]
                        let other = fleet.gateways[i % 2]
                        var (reply, to): (GatewayClient.Reply, TestGateway)
                        if i % 3 == 2, load.killed.withLock({ $0 }) == nil {
                            do { (reply, to) = (try await c.post("/runs", body, headers: headers), c) } catch {
                                guard load.killed.withLock({ $0 }) != nil else { throw error }
                                (reply, to) = (try await other.post("/runs", body, headers: headers), other)
                            }
                        } else {
                            to = fleet.gateways[i % 3 == 2 ? i % 2 : i % 3]
                            reply = try await to.post("/runs", body, headers: headers)
                        }
                        #expect(reply.status == 200 || reply.status == 202, "run \(i): \(reply.status) \(reply.errorMessage)\n\(to.logText.suffix(3000))")
                        load.submitted.withLock { $0 += 1 }
                    }
                }
            }
            try await group.waitForAll()
        }
        let held = try await killer.value
        let killedAt = try #require(load.killed.withLock { $0 }, "gateway C was never seen running a run while the load went on")
        #expect(held.contains { $0.hasPrefix("running|") }, "\(held)")
        #expect(try await fleet.sql("SELECT count(*) FROM runs") == ["\(total)"], "a resubmitted run was created twice")
        var done = 0
        for _ in 0..<1200 {
            done = Int(try await fleet.sql("SELECT count(*) FROM runs WHERE status IN ('succeeded', 'failed', 'cancelled')").first ?? "0") ?? 0
            if done == total { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(done == total, "only \(done) of \(total) runs ended")
        let statuses = try await fleet.sql("SELECT status, count(*) FROM runs GROUP BY status ORDER BY status")
        #expect(statuses == ["succeeded|\(total)"], "\(statuses)")
        // Each step finished once per run, whoever ran it.
        let repeated = try await fleet.sql("""
            SELECT run_id, step, count(*) FROM events WHERE type = 'step.finished' GROUP BY run_id, step HAVING count(*) > 1 LIMIT 5
            """)
        #expect(repeated.isEmpty, "\(repeated)")
        let finishedSteps = try await fleet.sql("SELECT count(*) FROM events WHERE type = 'step.finished'")
        let short = finishedSteps == ["\(total * 2)"] ? [] : try await fleet.sql("""
            SELECT r.id || ' ' || r.owner || ': ' || string_agg(e.type || coalesce('(' || e.step || ')', ''), ', ' ORDER BY e.seq)
            FROM runs r JOIN events e ON e.run_id = r.id
            WHERE (SELECT count(*) FROM events f WHERE f.run_id = r.id AND f.type = 'step.finished') <> 2
            GROUP BY r.id, r.owner LIMIT 5
            """)
        #expect(finishedSteps == ["\(total * 2)"], "runs without two step.finished: \(short)")
        // Every run's events number 1…n with no gap, and its end is its last.
        let gaps = try await fleet.sql("""
            SELECT r.id FROM runs r WHERE r.last_seq <> (SELECT count(*) FROM events e WHERE e.run_id = r.id)
               OR (SELECT type FROM events e WHERE e.run_id = r.id ORDER BY seq DESC LIMIT 1) <> 'run.succeeded' LIMIT 5
            """)
        #expect(gaps.isEmpty, "\(gaps)")
        // What C held was taken over: none of its runs is still its own, and they ended on A or B.
        #expect(try await fleet.sql("SELECT count(*) FROM runs WHERE owner = 'gw-c' AND finished_at > \(killedAt.timeIntervalSince1970 + 1)") == ["0"])
        let resumed = try await fleet.sql("SELECT count(*) FROM events WHERE type = 'run.resumed'")
        #expect((Int(resumed.first ?? "0") ?? 0) > 0, "no run of the killed gateway was resumed elsewhere")
        let owners = Set(try await fleet.sql("SELECT DISTINCT owner FROM runs"))
        #expect(owners.isSubset(of: ["gw-a", "gw-b", "gw-c"]) && owners.contains("gw-a") && owners.contains("gw-b"), "\(owners)")
        let members = try #require(try await fleet.gateways[0].get("/gateway/fleet").json)
        let alive = members["members"]?.array.filter { $0["alive"] == true }.compactMap { $0["id"]?.stringValue }
        #expect(alive == ["gw-a", "gw-b"], "\(members)")
        // One audit chain, all three gateways' entries in it (C's up to its death), verified from A.
        let report = try #require(try await fleet.gateways[0].get("/audit/verify").json)
        #expect(report["ok"] == true, "\(report)")
        let signers: [String] = if case let .object(o)? = report["signers"] { o.keys.sorted() } else { [] }
        // C may die before its first checkpoint (one every 1,000 of its entries); its entries are in the chain all the same.
        #expect(Set(signers).isSuperset(of: ["gw-a", "gw-b"]), "\(report)")
        #expect(try await fleet.gateways[0].get("/audit?gateway=gw-c&limit=1").json?["entries"]?.array.count == 1)
        #expect((report["entries"]?.int ?? 0) > total * 5, "\(report)")
    }

    @Test("one audit chain across the fleet: every entry names its gateway, each gateway signs with its own key, and the chain verifies from any gateway, from the CLI, and offline from an export; tampering is named")
    func oneAuditChain() async throws {
        let fleet = try await Self.fleet(["gw-a", "gw-b"], server: Self.server + "\naudit: { checkpointEvery: 10 }")
        defer { fleet.cleanupLater() }
        let (a, b) = (fleet.gateways[0], fleet.gateways[1])
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<12 { group.addTask { _ = try await fleet.gateways[i % 2].run("work", ["i": .number(Double(i))]) } }
            try await group.waitForAll()
        }
        // Both gateways' entries in one chain: one seq, no gap, each naming its writer.
        let page = try #require(try await b.get("/audit?limit=10000").json?["entries"]?.array)
        let seqs = page.compactMap { $0["seq"]?.int }
        #expect(seqs == Array((1...seqs.count).reversed()), "\(seqs.prefix(20))")
        let writers = Set(page.compactMap { $0["gateway"]?.stringValue })
        #expect(writers == ["gw-a", "gw-b"])
        let fromB = try #require(try await a.get("/audit?gateway=gw-b&action=run.*&limit=1000").json?["entries"]?.array)
        #expect(!fromB.isEmpty && fromB.allSatisfy { $0["gateway"] == "gw-b" && $0["action"]?.stringValue?.hasPrefix("run.") == true })
        let keys = page.filter { $0["action"] == "audit.key_added" }
        #expect(Set(keys.compactMap { $0["details"]?["gateway"]?.stringValue }) == ["gw-a", "gw-b"], "\(keys)")
        for gw in [a, b] {
            let report = try #require(try await gw.get("/audit/verify").json)
            #expect(report["ok"] == true && report["signers"]?["gw-a"] != nil && report["signers"]?["gw-b"] != nil, "\(report)")
        }
        let csv = String(decoding: try await a.get("/v1/audit/export?format=csv&gateway=gw-b").body, as: UTF8.self)
        let csvRows = csv.split(separator: "\n")
        #expect(csvRows.first == "seq,timestamp,actor,action,runId,details,prevHash,entryHash,gateway" && csvRows.count > 1
                && csvRows.dropFirst().allSatisfy { $0.hasSuffix(",gw-b") }, "\(csv.prefix(300))")
        // Stopped cleanly, each signs where it got to; the CLI reads the chain from the database.
        #expect(await a.stop() == 0)
        #expect(await b.stop() == 0)
        let verified = try await a.cli(["audit", "verify"])
        #expect(verified.status == 0 && verified.stdout.contains("ok: ") && verified.stdout.contains("gw-a: ") && verified.stdout.contains("gw-b: "),
                "\(verified)")
        // Against keys kept apart from the database: each gateway's own audit.pub.
        let pub = { (gw: TestGateway) in try String(contentsOfFile: gw.stateDir + "/audit.pub", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines) }
        let (pubA, pubB) = (try pub(a), try pub(b))
        let trusted = a.dir + "/trusted.keys"
        try "# kept off the database host\ngw-a \(pubA)\ngw-b \(pubB)\n".write(toFile: trusted, atomically: true, encoding: .utf8)
        let pinned = try await a.cli(["audit", "verify", "--keys", trusted])
        #expect(pinned.status == 0 && pinned.stdout.contains("gw-b signed with \(pubB) (trusted)"), "\(pinned)")
        // A key the database records but the operator does not trust is refused.
        try "gw-a \(pubA)\ngw-b \(pubA)\n".write(toFile: trusted, atomically: true, encoding: .utf8)
        let untrusted = try await a.cli(["audit", "verify", "--keys", trusted])
        #expect(untrusted.status == 1 && untrusted.stdout.contains("bad signature on the checkpoint") && untrusted.stdout.contains("by gw-b"), "\(untrusted)")
        let query = try await b.cli(["audit", "query", "--gateway", "gw-a", "--action", "gateway.stopped", "--json"])
        #expect(query.status == 0 && query.stdout.contains("\"gateway\":\"gw-a\"") && !query.stdout.contains("\"gateway\":\"gw-b\""), "\(query)")

        // Offline: an export verifies without the database, with skelm and without it.
        let bundle = a.dir + "/audit-export"
        let exported = try await a.cli(["audit", "export", "--to", bundle])
        #expect(exported.status == 0 && exported.stdout.contains("gw-a, gw-b"), "\(exported)")
        let offline = try await a.cli(["audit", "verify", "--state-dir", bundle], withConfig: false)
        let stored = try await fleet.sql("SELECT count(*) FROM audit_entries").first ?? "?"
        #expect(offline.status == 0 && offline.stdout.contains("ok: \(stored) entries"), "\(offline)")
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../scripts/audit-verify.py").standardized.path
        let python = try await runCommand(["python3", script, bundle])
        #expect(python.status == 0 && python.out.contains("ok: ") && python.out.contains("signatures checked"), "\(python)")
        #expect(try await a.cli(["audit", "export", "--to", bundle]).status != 0, "an export must not write over another")

        // An entry edited in the export is named, offline.
        var lines = try String(contentsOfFile: bundle + "/audit.jsonl", encoding: .utf8).split(separator: "\n").map(String.init)
        let victim = try #require(lines.firstIndex { $0.contains("\"action\":\"run.finished\"") })
        lines[victim] = lines[victim].replacingOccurrences(of: "\"status\":\"succeeded\"", with: "\"status\":\"failed\"")
        try (lines.joined(separator: "\n") + "\n").write(toFile: bundle + "/audit.jsonl", atomically: true, encoding: .utf8)
        let edited = try await a.cli(["audit", "verify", "--state-dir", bundle], withConfig: false)
        #expect(edited.status == 1 && edited.stdout.contains("BROKEN: bad hash at seq \(victim + 1)"), "\(edited)")
        #expect(try await runCommand(["python3", script, bundle]).out.contains("BROKEN: bad hash at seq \(victim + 1)"))

        // The same edit in the database, and a forged signature, and entries cut from the end.
        _ = try await fleet.sql("""
            UPDATE audit_entries SET line = replace(line, '"status":"succeeded"', '"status":"failed"') WHERE seq = \(victim + 1)
            """)
        let tampered = try await b.cli(["audit", "verify", "--json"])
        let named = JSONValue.parse(tampered.stdout)?["firstBreak"]
        #expect(tampered.status == 1 && named?["kind"] == "bad_hash" && named?["seq"]?.int == victim + 1, "\(tampered)")
        _ = try await fleet.sql("""
            UPDATE audit_entries SET line = replace(line, '"status":"failed"', '"status":"succeeded"') WHERE seq = \(victim + 1)
            """)
        #expect(try await b.cli(["audit", "verify"]).status == 0)
        _ = try await fleet.sql("UPDATE audit_checkpoints SET signature = repeat('0', 128) WHERE gateway = 'gw-b' AND seq = (SELECT min(seq) FROM audit_checkpoints WHERE gateway = 'gw-b')")
        let forged = try await b.cli(["audit", "verify"])
        #expect(forged.status == 1 && forged.stdout.contains("bad signature on the checkpoint") && forged.stdout.contains("by gw-b"), "\(forged)")
        _ = try await fleet.sql("DELETE FROM audit_checkpoints WHERE gateway = 'gw-b' AND signature = repeat('0', 128)")
        _ = try await fleet.sql("DELETE FROM audit_entries WHERE seq = (SELECT max(seq) FROM audit_entries)")
        let cut = try await a.cli(["audit", "verify"])
        #expect(cut.status == 1 && cut.stdout.contains("BROKEN: truncated"), "\(cut)")
        // The head row moved back over entries still there, or removed.
        _ = try await fleet.sql("UPDATE audit_head SET seq = seq - 2")
        #expect(try await a.cli(["audit", "verify"]).stdout.contains("the head row was moved back"))
        _ = try await fleet.sql("DELETE FROM audit_head")
        #expect(try await a.cli(["audit", "verify"]).stdout.contains("the chain's head row is missing"))
    }

    @Test("any gateway serves any run: SSE on A follows a run executing on C to its end; a cancel sent to A stops C's worker; an approval decided on B resumes a run parked by A")
    func anyGatewayReachesTheRun() async throws {
        let fleet = try await Self.fleet(["gw-a", "gw-b", "gw-c"])
        defer { fleet.cleanupLater() }
        let (a, b, c) = (fleet.gateways[0], fleet.gateways[1], fleet.gateways[2])

        let slow = try await c.run("slow", [:], sync: false)
        let slowId = try #require(slow["id"]?.stringValue)
        // Followed from A while C runs it: every event, in order, live, to the end.
        let (events, _) = try await a.events(slowId)
        #expect(events.compactMap(\.id) == (1...events.count).map { "\($0)" }, "\(events.compactMap(\.id))")
        #expect(events.last?.type == "run.succeeded", "\(events.map(\.type))")
        #expect(events.filter { $0.type == "step.finished" }.count == 3)
        let done = try #require(try await a.get("/runs/\(slowId)").json)
        #expect(done["gateway"] == "gw-c" && done["status"] == "succeeded", "\(done)")

        // Cancelled through A while it runs on B.
        let long = try await b.run("long", [:], sync: false)
        let longId = try #require(long["id"]?.stringValue)
        _ = try await b.waitForStatus(longId, ["running"])
        for _ in 0..<100 where try await b.get("/gateway/status").json?["workers"]?["busy"] == 0 { try await Task.sleep(for: .milliseconds(50)) }
        let cancelled = try await a.post("/runs/\(longId)/cancel", [:])
        #expect(cancelled.status == 200 && cancelled.json?["status"] == "cancelled",
                "\(cancelled.status) \(cancelled.json ?? .null)\nA: \(a.logText.suffix(3000))\nB: \(b.logText.suffix(3000))")
        var busy: JSONValue?
        for _ in 0..<100 {
            busy = try await b.get("/gateway/status").json?["workers"]?["busy"]
            if busy == 0 { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(busy == 0, "B's worker for the cancelled run is still busy")
        let (longEvents, _) = try await c.events(longId)
        #expect(longEvents.last?.type == "run.cancelled", "\(longEvents.map(\.type))")

        // Parked by A, approved through B: B takes the run on and finishes it.
        let parked = try await a.run("deploy", ["version": "3"], sync: false)
        let parkedId = try #require(parked["id"]?.stringValue)
        _ = try await a.waitForStatus(parkedId, ["waiting"])
        let approval = try #require(try await b.get("/approvals?run=\(parkedId)").json?["approvals"].list.first)
        let aid = try #require(approval["id"]?.stringValue)
        #expect(try await b.post("/approvals/\(aid)/approve", ["reason": "ok"]).status == 200)
        let shipped = try await c.waitForStatus(parkedId, ["succeeded", "failed"])
        #expect(shipped["status"] == "succeeded" && shipped["gateway"] == "gw-b", "\(shipped)")
    }

    @Test("a fleet pause set through one gateway stops new runs on all of them, and is lifted through another")
    func fleetPause() async throws {
        let fleet = try await Self.fleet(["gw-a", "gw-b"])
        defer { fleet.cleanupLater() }
        let (a, b) = (fleet.gateways[0], fleet.gateways[1])
        let paused = try await a.post("/gateway/pause?scope=fleet", ["reason": "schema change"])
        #expect(paused.status == 200 && paused.json?["state"] == "paused", "\(paused.status) \(paused.errorMessage)")
        var refused: GatewayClient.Reply?
        for _ in 0..<100 {
            refused = try await b.post("/runs", ["workflow": "work", "input": [:]])
            if refused?.status == 503 { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(refused?.status == 503 && refused?.json?["error"]?["code"] == "paused", "\(refused?.status ?? 0)")
        #expect(refused?.errorMessage.contains("schema change") == true)
        let view = try #require(try await b.get("/gateway/fleet").json)
        #expect(view["pause"]?["reason"] == "schema change" && view["gateway"] == "gw-b", "\(view)")
        // A gateway's own resume does not lift the fleet's pause.
        _ = try await b.post("/gateway/resume", [:])
        #expect(try await b.post("/runs", ["workflow": "work", "input": [:]]).status == 503)
        #expect(try await b.post("/gateway/resume?scope=fleet", [:]).status == 200)
        var accepted = 0
        for _ in 0..<100 {
            accepted = Int(try await a.post("/runs", ["workflow": "work", "input": [:], "mode": "async"]).status)
            if accepted == 202 { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(accepted == 202)
        #expect(try await a.post("/gateway/pause?scope=everything", [:]).status == 400)
        let actions = try await a.auditEntries(action: "gateway.paused")
        #expect(actions.contains { $0["details"]?["scope"] == "fleet" })
    }

    @Test("one gateway fires the time-based triggers; when it is killed another takes over within seconds, and every slot fires once")
    func triggerLeader() async throws {
        var workflows = Self.workflows
        workflows["tick.workflow.yaml"] = """
            id: tick
            steps:
              - { id: say, run: echo tick }
            triggers:
              - { id: second, every: 1s, overlap: allow_all }
            """
        let fleet = try await Self.fleet(["gw-a", "gw-b", "gw-c"], workflows: workflows)
        defer { fleet.cleanupLater() }
        var leaders: [Int] = []
        for _ in 0..<100 {
            leaders = []
            for (i, gw) in fleet.gateways.enumerated() where try await gw.get("/gateway/status").json?["leader"] == true { leaders.append(i) }
            if leaders.count == 1 { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(leaders.count == 1, "leaders: \(leaders)")
        let leader = try #require(leaders.first)
        try await Task.sleep(for: .seconds(3))
        let killedAt = Date().timeIntervalSince1970
        await fleet.gateways[leader].stop(signal: SIGKILL)
        // Fires go on: the leader's lock went with its connection; the next beat of another gateway takes it.
        var slots: [Double] = []
        for _ in 0..<300 {
            slots = try await fleet.sql("SELECT scheduled_at FROM runs WHERE trigger_id = 'tick.second' ORDER BY scheduled_at").compactMap(Double.init)
            if slots.filter({ $0 > killedAt + 1 }).count >= 3 { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(Set(slots).count == slots.count, "a slot fired twice: \(slots)")
        let after = slots.filter { $0 > killedAt + 1 }
        #expect(after.count >= 3, "the trigger stopped firing when its leader died: \(slots.map { $0 - killedAt })")
        let owners = Set(try await fleet.sql("SELECT DISTINCT owner FROM runs WHERE trigger_id = 'tick.second' AND scheduled_at > \(killedAt + 1)"))
        #expect(!owners.contains("gw-\(["a", "b", "c"][leader])"), "\(owners)")
        let live = fleet.gateways.indices.filter { $0 != leader }
        var now: [Int] = []
        for i in live where try await fleet.gateways[i].get("/gateway/status").json?["leader"] == true { now.append(i) }
        #expect(now.count == 1, "leaders after the kill: \(now)")
    }

    @Test("server.fleetMaxConcurrentRuns bounds the runs holding a worker across all gateways; the rest wait and all finish")
    func fleetCap() async throws {
        var workflows = Self.workflows
        workflows["nap.workflow.yaml"] = """
            id: nap
            steps:
              - { id: nap, exec: { argv: [sh, -c, 'sleep 1; echo ok'] } }
            """
        // Each nap outlasts a sample of the table (a psql process), even on a
        // loaded host: four waves of a second each, so the cap is seen reached.
        let fleet = try await Self.fleet(["gw-a", "gw-b"], workflows: workflows,
                                         server: "{ host: 127.0.0.1, port: 0, maxConcurrentRuns: 4, fleetMaxConcurrentRuns: 3 }")
        defer { fleet.cleanupLater() }
        var ids: [String] = []
        for i in 0..<12 { ids.append(try #require(try await fleet.gateways[i % 2].run("nap", [:], sync: false)["id"]?.stringValue)) }
        var peak = 0
        var ended = 0
        for _ in 0..<600 {
            let row = try await fleet.sql("""
                SELECT count(*) FILTER (WHERE status = 'running'), count(*) FILTER (WHERE status IN ('succeeded', 'failed', 'cancelled')) FROM runs
                """).first ?? "0|0"
            let counts = row.split(separator: "|").compactMap { Int($0) }
            peak = max(peak, counts.first ?? 0)
            ended = counts.last ?? 0
            if ended == ids.count { break }
            try await Task.sleep(for: .milliseconds(25))
        }
        #expect(ended == ids.count)
        #expect(peak <= 3, "\(peak) runs held a worker at once across the fleet")
        #expect(peak >= 2, "the cap was never approached: \(peak)")
        #expect(try await fleet.sql("SELECT DISTINCT status FROM runs") == ["succeeded"])
    }
}
