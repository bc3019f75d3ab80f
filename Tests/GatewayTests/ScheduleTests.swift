import Foundation
import SkelmClient
import Testing
import Workflow

#if canImport(Glibc)
import Glibc
#endif

/// Cron, interval and at triggers on the real gateway, driven by the
/// scheduler's injectable clock: slots fire once, catch-up policies decide
/// what a restart finds missed, and nothing fires twice across a restart or a reload.
@Suite("Schedules: cron, every, at, catch-up and control", .serialized)
struct ScheduleTests {
    static let tick = """
        id: tick
        steps:
          - id: say
            run: echo tick
        triggers:
          - cron: "*/5 * * * *"
            id: five
          - every: 10s
            id: ten
        """

    @Test("a cron slot fires once at its time; an interval fires every period; upcoming fire times are shown")
    func firesAtSlots() async throws {
        let gw = try TestGateway(workflows: ["tick.workflow.yaml": Self.tick])
        try gw.useClock("2026-11-30T10:03:00Z")
        try await gw.start()
        defer { gw.cleanupLater() }

        let five = try await gw.trigger("tick.five")
        #expect(five["state"]?.stringValue == "armed")
        #expect(five["nextFireAt"]?.stringValue == "2026-11-30T10:05:00.000Z")
        #expect(five["upcoming"]?.array.compactMap(\.stringValue) == [
            "2026-11-30T10:05:00.000Z", "2026-11-30T10:10:00.000Z", "2026-11-30T10:15:00.000Z", "2026-11-30T10:20:00.000Z", "2026-11-30T10:25:00.000Z",
        ])
        #expect(five["spec"]?["cron"]?.stringValue == "*/5 * * * *")
        try gw.setClock("2026-11-30T10:05:01Z")
        let runs = try await gw.awaitTriggered("tick.five", count: 1)
        #expect(runs.count == 1)
        #expect(runs.first?["scheduledAt"]?.stringValue == "2026-11-30T10:05:00.000Z")
        #expect(runs.first?["trigger"]?.stringValue == "tick.five")
        #expect(runs.first?["status"]?.stringValue == "succeeded")

        // The interval was armed at 10:03:00: its slots are 10:03:10, 10:03:20, …
        // The jump to 10:05:01 missed eleven of them (catch-up none) and fired the one on time.
        let ten = try await gw.awaitTriggered("tick.ten", count: 1)
        #expect(ten.count == 1)
        #expect(ten.first?["scheduledAt"]?.stringValue == "2026-11-30T10:05:00.000Z")
        for second in [11, 21, 31] {
            try gw.setClock("2026-11-30T10:05:\(second)Z")
            try await gw.awaitTriggered("tick.ten", count: ten.count + (second - 1) / 10)
        }
        #expect(try await gw.triggeredRuns("tick.ten").count == 4)
        #expect(try await gw.triggeredRuns("tick.five").count == 1)
        let fired = try await gw.auditEntries(action: "trigger.fired")
        #expect(fired.contains { $0["details"]?["trigger"]?.stringValue == "tick.five" && $0["runId"] != nil })
        let skipped = try await gw.auditEntries(action: "trigger.skipped")
        #expect(skipped.contains { $0["details"]?["trigger"]?.stringValue == "tick.ten" && $0["details"]?["slots"]?.stringValue == "11" })

        // The CLI previews the same times.
        let next = try await gw.cli(["schedule", "next", "tick.five", "-n", "2"])
        #expect(next.status == 0)
        #expect(next.stdout.split(separator: "\n") == ["2026-11-30T10:10:00.000Z", "2026-11-30T10:15:00.000Z"], "\(next)")
    }

    @Test("upcoming fire times follow the zone's DST: a 02:30 that a spring-forward skips fires once, at 03:00")
    func dstPreview() async throws {
        let gw = try TestGateway(workflows: ["nightly.workflow.yaml": """
            id: nightly
            steps: [ { id: s, run: echo } ]
            triggers:
              - { cron: "30 2 * * *", tz: America/New_York }
              - { id: berlin, cron: "30 2 * * *", tz: Europe/Berlin }
            """])
        try gw.useClock("2027-03-12T12:00:00Z")
        try await gw.start()
        defer { gw.cleanupLater() }
        // 14 March 2027 in New York and 28 March 2027 in Berlin have no 02:30.
        #expect(try await gw.trigger("nightly.cron", upcoming: 4)["upcoming"]?.array.compactMap(\.stringValue) == [
            "2027-03-13T07:30:00.000Z", "2027-03-14T07:00:00.000Z", "2027-03-15T06:30:00.000Z", "2027-03-16T06:30:00.000Z",
        ])
        try gw.setClock("2027-03-26T12:00:00Z")
        #expect(try await gw.trigger("nightly.berlin", upcoming: 3)["upcoming"]?.array.compactMap(\.stringValue) == [
            "2027-03-27T01:30:00.000Z", "2027-03-28T01:00:00.000Z", "2027-03-29T00:30:00.000Z",
        ])
    }

    static let catchUp = """
        id: catch
        steps:
          - id: say
            run: echo caught
        triggers:
          - { id: none, cron: "* * * * *" }
          - { id: one, cron: "* * * * *", catchUp: one }
          - { id: all, cron: "* * * * *", catchUp: all }
          - { id: once, at: "2026-11-30T10:03:30Z" }
          - { id: once-none, at: "2026-11-30T10:03:40.000Z", catchUp: none }
        """

    @Test("a restart across cron slots catches up by policy, and a second restart or a reload fires nothing again")
    func catchUpAcrossRestart() async throws {
        let gw = try TestGateway(workflows: ["catch.workflow.yaml": Self.catchUp])
        try gw.useClock("2026-11-30T10:00:30Z")
        try await gw.start()
        defer { gw.cleanupLater() }
        #expect(try await gw.trigger("catch.all")["nextFireAt"]?.stringValue == "2026-11-30T10:01:00.000Z")
        #expect(await gw.stop() == 0)

        // Down from 10:00:30 to 10:05:30: slots 10:01 … 10:05 and both one-shots were missed.
        try gw.setClock("2026-11-30T10:05:30Z")
        try await gw.start()
        let all = try await gw.awaitTriggered("catch.all", count: 5)
        #expect(all.compactMap { $0["scheduledAt"]?.stringValue } == (1...5).map { "2026-11-30T10:0\($0):00.000Z" })
        let one = try await gw.awaitTriggered("catch.one", count: 1)
        #expect(one.count == 1)
        #expect(one.first?["scheduledAt"]?.stringValue == "2026-11-30T10:05:00.000Z")
        #expect(try await gw.triggeredRuns("catch.none").isEmpty)
        #expect(try await gw.trigger("catch.none")["skipped"]?.int == 5)
        #expect(try await gw.trigger("catch.none")["nextFireAt"]?.stringValue == "2026-11-30T10:06:00.000Z")
        #expect(try await gw.awaitTriggered("catch.once", count: 1).count == 1)
        #expect(try await gw.trigger("catch.once")["state"]?.stringValue == "done")
        #expect(try await gw.triggeredRuns("catch.once-none").isEmpty)
        #expect(try await gw.trigger("catch.once-none")["state"]?.stringValue == "done")

        // Again, at the same instant, after a crash: nothing is missed twice, the one-shot never fires again.
        await gw.stop(signal: SIGKILL)
        try await gw.start()
        let reload = try await gw.post("/registry/reload", [:])
        #expect(reload.status == 200)
        try await Task.sleep(for: .seconds(1))
        #expect(try await gw.triggeredRuns("catch.all").count == 5)
        #expect(try await gw.triggeredRuns("catch.one").count == 1)
        #expect(try await gw.triggeredRuns("catch.once").count == 1)
        #expect(try await gw.trigger("catch.once")["fired"]?.int == 1)

        // The next slot on time: each fires once.
        try gw.setClock("2026-11-30T10:06:02Z")
        #expect(try await gw.awaitTriggered("catch.none", count: 1).count == 1)
        #expect(try await gw.awaitTriggered("catch.one", count: 2).count == 2)
        #expect(try await gw.awaitTriggered("catch.all", count: 6).count == 6)
    }

    static let hold = """
        id: hold
        steps:
          - id: w
            wait: { message: "until resumed" }
        triggers:
          - { id: skip, manual: true }
          - { id: one, manual: true, overlap: buffer_one }
          - { id: all, manual: true, overlap: buffer_all, maxBuffer: 2 }
          - { id: newest, manual: true, overlap: cancel_other }
          - { id: many, manual: true, overlap: allow_all, maxConcurrent: 2 }
        """

    func fire(_ gw: TestGateway, _ id: String) async throws -> GatewayClient.Reply {
        try await gw.post("/triggers/hold.\(id)/fire", [:])
    }

    func resume(_ gw: TestGateway, _ run: String?) async throws {
        // A fire answers once its run exists; the run reaches its wait step a moment later.
        _ = try await gw.waitForStatus(run ?? "", ["waiting"])
        let r = try await gw.post("/runs/\(run ?? "")/resume", ["output": [:]])
        #expect(r.status == 200, "\(r.errorMessage)")
    }

    @Test("overlap policies: skip, buffer_one, buffer_all, cancel_other and allow_all, each counted and audited")
    func overlap() async throws {
        let gw = try await TestGateway.started(workflows: ["hold.workflow.yaml": Self.hold])
        defer { gw.cleanupLater() }

        // skip: the second fire is refused while the first run waits.
        let first = try await fire(gw, "skip")
        #expect(first.status == 202)
        let firstRun = first.json?["runId"]?.stringValue
        _ = try await gw.waitForStatus(firstRun ?? "", ["waiting"])
        let second = try await fire(gw, "skip")
        #expect(second.status == 409)
        #expect(second.errorCode == .triggerBusy)
        #expect(try await gw.trigger("hold.skip")["skipped"]?.int == 1)
        try await resume(gw, firstRun)
        _ = try await gw.waitForStatus(firstRun ?? "", ["succeeded"])
        try await Task.sleep(for: .milliseconds(300))
        #expect(try await fire(gw, "skip").status == 202)
        let busy = try await gw.triggeredRuns("hold.skip").last?["id"]?.stringValue
        try await resume(gw, busy)
        _ = try await gw.waitForStatus(busy ?? "", ["succeeded"])
        try await Task.sleep(for: .milliseconds(300))
        // Ten fires at once: the policy admits one, however they interleave.
        let together = try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<10 { group.addTask { try await self.fire(gw, "skip").status } }
            var statuses: [Int] = []
            for try await s in group { statuses.append(s) }
            return statuses
        }
        #expect(together.filter { $0 == 202 }.count == 1, "\(together)")
        #expect(together.filter { $0 == 409 }.count == 9)

        // buffer_one: one waits, the next is dropped; the buffered one starts when the first ends.
        let b1 = try await fire(gw, "one")
        _ = try await gw.waitForStatus(b1.json?["runId"]?.stringValue ?? "", ["waiting"])
        #expect(try await fire(gw, "one").json?["outcome"]?.stringValue == "buffered")
        let dropped = try await fire(gw, "one")
        #expect(dropped.status == 409)
        let view = try await gw.trigger("hold.one")
        #expect(view["queueDepth"]?.int == 1)
        #expect(view["dropped"]?.int == 1)
        try await resume(gw, b1.json?["runId"]?.stringValue)
        var runs: [JSONValue] = []
        for _ in 0..<100 {
            runs = try await gw.triggeredRuns("hold.one")
            if runs.count == 2 { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(runs.count == 2)
        #expect(try await gw.trigger("hold.one")["queueDepth"]?.int == 0)

        // buffer_all with maxBuffer 2: two wait, the third is dropped.
        _ = try await fire(gw, "all")
        #expect(try await fire(gw, "all").json?["outcome"]?.stringValue == "buffered")
        #expect(try await fire(gw, "all").json?["outcome"]?.stringValue == "buffered")
        #expect(try await fire(gw, "all").status == 409)
        #expect(try await gw.trigger("hold.all")["queueDepth"]?.int == 2)

        // cancel_other: the newest fire wins.
        let old = try await fire(gw, "newest").json?["runId"]?.stringValue ?? ""
        _ = try await gw.waitForStatus(old, ["waiting"])
        let newer = try await fire(gw, "newest")
        #expect(newer.status == 202)
        #expect(try await gw.waitForStatus(old, ["cancelled"])["status"]?.stringValue == "cancelled")

        // allow_all with maxConcurrent 2.
        #expect(try await fire(gw, "many").status == 202)
        #expect(try await fire(gw, "many").status == 202)
        #expect(try await fire(gw, "many").status == 409)
        #expect(try await gw.trigger("hold.many")["inflight"]?.int == 2)

        let metrics = Scrape(String(decoding: try await gw.get("/metrics").body, as: UTF8.self))
        #expect(metrics[#"skelm_trigger_fires_total{kind="manual",outcome="skipped"}"#] >= 10)
        #expect(metrics[#"skelm_trigger_fires_total{kind="manual",outcome="dropped"}"#] == 3)
        #expect(metrics[#"skelm_trigger_fires_total{kind="manual",outcome="buffered"}"#] == 3)
        #expect(metrics.samples[#"skelm_trigger_fires_total{kind="cron",outcome="fired"}"#] != nil, "every series exists from the start")
        let drops = try await gw.auditEntries(action: "trigger.dropped")
        #expect(Set(drops.compactMap { $0["details"]?["trigger"]?.stringValue }) == ["hold.one", "hold.all", "hold.many"])
        #expect(try await gw.auditEntries(action: "trigger.skipped").contains { $0["details"]?["trigger"]?.stringValue == "hold.skip" })
    }

    @Test("pause with a note stops fires and unpause realigns; the gateway's pause stops them too and its resume catches up")
    func pausing() async throws {
        let gw = try TestGateway(workflows: ["catch.workflow.yaml": Self.catchUp])
        try gw.useClock("2026-11-30T10:00:30Z")
        try await gw.start()
        defer { gw.cleanupLater() }

        let paused = try await gw.post("/triggers/catch.all/pause", ["note": "maintenance window"])
        #expect(paused.status == 200)
        #expect(paused.json?["state"]?.stringValue == "paused")
        #expect(paused.json?["pauseNote"]?.stringValue == "maintenance window")
        try gw.setClock("2026-11-30T10:02:03Z")
        #expect(try await gw.awaitTriggered("catch.none", count: 1).count == 1)
        #expect(try await gw.triggeredRuns("catch.all").isEmpty)
        let unpaused = try await gw.cli(["schedule", "unpause", "catch.all"])
        #expect(unpaused.status == 0, "\(unpaused)")
        #expect(try await gw.trigger("catch.all")["nextFireAt"]?.stringValue == "2026-11-30T10:03:00.000Z")
        try await Task.sleep(for: .milliseconds(500))
        #expect(try await gw.triggeredRuns("catch.all").isEmpty, "slots passed while paused are not caught up")

        // The gateway paused: no trigger fires; resumed: `one` catches up once.
        #expect(try await gw.post("/gateway/pause", ["reason": "incident"]).status == 200)
        try gw.setClock("2026-11-30T10:05:30Z")
        try await Task.sleep(for: .milliseconds(800))
        #expect(try await gw.triggeredRuns("catch.one").count == 1)
        #expect(try await gw.post("/gateway/resume", [:]).status == 200)
        #expect(try await gw.awaitTriggered("catch.one", count: 2).count == 2)
        let audits = try await gw.auditEntries(action: "trigger.paused")
        #expect(audits.first?["details"]?["note"]?.stringValue == "maintenance window")
    }

    @Test("bad expressions, zones and intervals are load errors with their path and line; schedules are checked the same way")
    func validation() async throws {
        let bad = """
            id: bad
            steps:
              - { id: s, run: echo }
            triggers:
              - cron: "61 * * * *"
              - { id: zone, cron: "0 9 * * MON", tz: Mars/Olympus }
              - { id: fast, every: 500ms }
              - { id: hook, webhook: { path: x, headers: [Authorization] } }
              - { id: open, webhook: { path: y, public: true } }
              - { id: steal, webhook: { path: z, dedupe: { header: Authorization } } }
              - { id: probe, poll: { every: 1s, probe: { run: echo } } }
            """
        let gw = try await TestGateway.started(workflows: ["bad.workflow.yaml": bad, "tick.workflow.yaml": Self.tick])
        defer { gw.cleanupLater() }
        let entry = try await gw.get("/registry/workflows/bad")
        let issues = entry.json?["workflow"]?["issues"]?.array ?? []
        func issue(_ path: String) -> JSONValue? { issues.first { $0["path"]?.stringValue == path } }
        #expect(issue("triggers[0](cron).cron")?["line"]?.int == 5, "\(issues)")
        #expect(issue("triggers[0](cron).cron")?["message"]?.stringValue?.contains("61") == true)
        #expect(issue("triggers[1](zone).tz")?["line"]?.int == 6)
        #expect(issue("triggers[2](fast).every")?["message"]?.stringValue?.contains("1s") == true)
        #expect(issue("triggers[3](hook).webhook.headers") != nil)
        #expect(issue("triggers[4](open).webhook.public")?["message"]?.stringValue?.contains("needs a signature") == true)
        #expect(issue("triggers[5](steal).webhook.dedupe.header") != nil)
        #expect(issue("triggers[6](probe).poll.every") != nil)

        // Operator schedules: checked by the same reader, kept until deleted.
        let refused = try await gw.post("/schedules", ["workflow": "tick", "cron": "* * *"])
        #expect(refused.status == 400)
        #expect(refused.errorCode == .invalidSchedule)
        #expect(try await gw.post("/schedules", ["workflow": "nope", "every": "1m"]).status == 404)
        // Durations that do not fit are refused, never converted.
        for window: JSONValue in [1e300, "infh", "nanh", "1e300s"] {
            let r = try await gw.post("/schedules", ["workflow": "tick", "every": "1m", "catchUpWindow": window])
            #expect(r.status == 400, "\(window): \(r.status)")
        }
        #expect(try await gw.get("/health").status == 200)
        let added = try await gw.post("/schedules", ["workflow": "tick", "every": "1h", "input": ["x": 1]])
        #expect(added.status == 201, "\(added.errorMessage)")
        let id = added.json?["id"]?.stringValue ?? ""
        #expect(id.hasPrefix("sch_"))
        #expect(try await gw.get("/schedules").json?["schedules"]?.array.count == 1)
        #expect(await gw.stop() == 0)
        try await gw.start()
        #expect(try await gw.trigger(id)["source"]?.stringValue == "operator")
        let removed = try await gw.cli(["schedule", "rm", id])
        #expect(removed.status == 0, "\(removed)")
        #expect(try await gw.get("/triggers/\(id)").status == 404)
        #expect(try await gw.client.send(.DELETE, "/schedules/tick.five").status == 409, "a declared trigger is removed in its file")
    }

    @Test("skelm schedule add, list, fire, pause and rm drive the same API")
    func cli() async throws {
        let gw = try await TestGateway.started(workflows: ["tick.workflow.yaml": Self.tick])
        defer { gw.cleanupLater() }
        let added = try await gw.cli(["schedule", "add", "tick", "--cron", "0 9 * * MON-FRI", "--tz", "Europe/Berlin", "--input", #"{"who": "cli"}"#, "--json"])
        #expect(added.status == 0, "\(added)")
        let id = JSONValue.parse(added.stdout)?["id"]?.stringValue ?? ""
        #expect(id.hasPrefix("sch_"))
        let bad = try await gw.cli(["schedule", "add", "tick", "--cron", "0 25 * * *"])
        #expect(bad.status != 0)
        #expect(bad.stderr.contains("hour"), "\(bad)")
        let list = try await gw.cli(["schedule", "list"])
        #expect(list.stdout.contains(id) && list.stdout.contains("tick.five"), "\(list)")
        let fired = try await gw.cli(["schedule", "fire", id])
        #expect(fired.status == 0, "\(fired)")
        #expect(fired.stdout.contains("fired: run_"))
        let runs = try await gw.awaitTriggered(id, count: 1)
        #expect(runs.first?["input"]?["who"]?.stringValue == "cli")
        let listed = try await gw.cli(["runs", "list", "--trigger", id])
        #expect(listed.stdout.contains(runs.first?["id"]?.stringValue ?? "?"), "\(listed)")
        let paused = try await gw.cli(["schedule", "pause", id, "--note", "not today"])
        #expect(paused.stdout.contains("paused"), "\(paused)")
        #expect(try await gw.cli(["schedule", "rm", id]).status == 0)
        #expect(try await gw.cli(["schedule", "rm", id]).status != 0)
    }

    @Test("a reload re-syncs declared triggers: unchanged keep their state, changed re-arm, an invalid workflow disarms them saying why")
    func reloadResync() async throws {
        let gw = try TestGateway(workflows: ["tick.workflow.yaml": Self.tick])
        try gw.useClock("2026-11-30T10:03:00Z")
        try await gw.start()
        defer { gw.cleanupLater() }
        try gw.setClock("2026-11-30T10:05:01Z")
        try await gw.awaitTriggered("tick.five", count: 1)
        let file = gw.dir + "/workflows/tick.workflow.yaml"

        try (Self.tick + "\n").write(toFile: file, atomically: true, encoding: .utf8)
        #expect(try await gw.post("/registry/reload", [:]).status == 200)
        try await Task.sleep(for: .milliseconds(300))
        #expect(try await gw.trigger("tick.five")["fired"]?.int == 1, "unchanged: its state kept")

        try "id: tick\nsteps: [ { id: s, nope: 1 } ]\n".write(toFile: file, atomically: true, encoding: .utf8)
        #expect(try await gw.post("/registry/reload", [:]).status == 200)
        var view = JSONValue.null
        for _ in 0..<50 {
            view = try await gw.trigger("tick.five")
            if view["state"]?.stringValue == "disarmed" { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(view["state"]?.stringValue == "disarmed")
        #expect(view["disarmedReason"]?.stringValue?.contains("workflow tick is invalid") == true, "\(view)")
        try gw.setClock("2026-11-30T10:10:01Z")
        try await Task.sleep(for: .milliseconds(500))
        #expect(try await gw.triggeredRuns("tick.five").count == 1)

        try Self.tick.replacingOccurrences(of: "*/5 * * * *", with: "*/10 * * * *").write(toFile: file, atomically: true, encoding: .utf8)
        #expect(try await gw.post("/registry/reload", [:]).status == 200)
        for _ in 0..<50 {
            view = try await gw.trigger("tick.five")
            if view["state"]?.stringValue == "armed" { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(view["state"]?.stringValue == "armed")
        #expect(view["spec"]?["cron"]?.stringValue == "*/10 * * * *")
        #expect(view["nextFireAt"]?.stringValue == "2026-11-30T10:20:00.000Z")
        #expect(view["fired"]?.int == 1, "counters survive a change")
    }
}
