import Foundation
import SkelmClient
import Testing
import Workflow

@Suite("Dashboard and run lists", .serialized)
final class DashboardTests {
    let gw: TestGateway

    static let workflows = TestWorkflows.all.merging([
        "deploy.workflow.yaml": """
            id: deploy
            steps:
              - { id: build, run: echo built }
              - id: gate
                approval: { message: "Deploy?", timeout: 1h }
              - { id: ship, run: echo shipped }
            """,
    ]) { a, _ in a }

    init() async throws {
        gw = try await TestGateway.started(workflows: Self.workflows)
    }

    deinit { gw.cleanupLater() }

    /// What the mix made, as the runs' own records report it.
    struct Mix {
        var runs: [JSONValue] = []
        var ids: [String] { runs.compactMap { $0["id"]?.stringValue } }
        func runIds(_ workflow: String) -> [String] { runs.filter { $0["workflow"]?.stringValue == workflow }.compactMap { $0["id"]?.stringValue } }
    }

    /// 3 hello (succeed), 2 fails (ExecFailed), 1 timeout (Timeout), 1 slow
    /// cancelled while running, 1 deploy approved (succeeds), 1 deploy left
    /// waiting at its approval: 9 runs, in that order of creation.
    func makeMix() async throws -> Mix {
        var mix = Mix()
        for name in ["Ada", "Bob", "Cy"] { mix.runs.append(try await gw.run("hello", ["name": .string(name)])) }
        for _ in 0..<2 { mix.runs.append(try await gw.run("fails")) }
        mix.runs.append(try await gw.run("timeout"))

        let slow = try await gw.run("slow", ["seconds": 30], sync: false)["id"]!.stringValue!
        // Cancelled once running, so it has started and has a duration.
        _ = try await gw.waitForStatus(slow, ["running"])
        #expect(try await gw.post("/runs/\(slow)/cancel", [:]).status == 200)
        mix.runs.append(try await gw.waitForStatus(slow, ["cancelled"]))

        let approved = try await gw.run("deploy", sync: false)["id"]!.stringValue!
        _ = try await gw.waitForStatus(approved, ["waiting"])
        let approval = try await gw.get("/approvals?run=\(approved)").json?["approvals"].list.first?["id"]?.stringValue
        #expect(try await gw.post("/approvals/\(approval ?? "?")/approve", [:]).status == 200)
        mix.runs.append(try await gw.waitForStatus(approved, ["succeeded"]))

        let waiting = try await gw.run("deploy", sync: false)["id"]!.stringValue!
        mix.runs.append(try await gw.waitForStatus(waiting, ["waiting"]))

        // Records as they are now (the first fetch of a run may predate its end).
        for (i, id) in mix.ids.enumerated() { mix.runs[i] = try await gw.get("/runs/\(id)").json! }
        return mix
    }

    static func number(_ v: JSONValue?) -> Double? { if case let .number(n)? = v { n } else { nil } }

    static func iso(_ date: Date) -> String {
        date.formatted(.iso8601.year().month().day().time(includingFractionalSeconds: true).timeZone(separator: .omitted))
    }

    static func date(_ iso: String) -> Date? {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f.date(from: iso) ?? ISO8601DateFormatter().date(from: iso)
    }

    /// Nearest-rank, as the store computes it.
    static func percentile(_ sorted: [Double], _ p: Int) -> Double { sorted[(sorted.count * p + 99) / 100 - 1] }

    func getOK(_ path: String) async throws -> JSONValue {
        let r = try await gw.tcp.get(path)
        #expect(r.status == 200, "\(path): \(r.errorMessage)")
        return r.json ?? .null
    }

    @Test("every dashboard route reports the exact numbers of a known mix of runs")
    func numbers() async throws {
        let mix = try await makeMix()
        let durations = mix.runs.compactMap { Self.number($0["durationMs"]) }.sorted()
        #expect(durations.count == 8, "every run but the waiting one started and ended")
        let mean = durations.reduce(0, +) / Double(durations.count)
        func close(_ a: JSONValue?, _ b: Double) -> Bool { Self.number(a).map { abs($0 - b) < 0.01 } ?? false }

        let o = try await getOK("/v1/dashboard/overview")
        let counts: JSONValue = ["total": 9, "queued": 0, "running": 0, "waiting": 1, "succeeded": 4, "failed": 3, "cancelled": 1]
        #expect(o["totals"] == counts)
        #expect(o["last24h"] == 9)
        #expect(o["pendingApprovals"] == 1)
        #expect(o["window"]?["counts"] == counts)
        #expect(o["window"]?["successRate"] == 0.5)
        #expect(o["window"]?["workflows"] == 5)
        #expect(o["window"]?["durationMs"]?["count"] == 8)
        #expect(close(o["window"]?["durationMs"]?["mean"], mean))
        #expect(close(o["window"]?["durationMs"]?["p50"], Self.percentile(durations, 50)), "\(durations) \(o)")
        #expect(close(o["window"]?["durationMs"]?["p95"], Self.percentile(durations, 95)), "\(durations) \(o)")
        // A window with nothing in it: zero counts, no rate, no durations; the totals stay.
        let past = try await getOK("/v1/dashboard/overview?since=2020-01-01T00:00:00Z&until=2020-01-02T00:00:00.5Z")
        #expect(past["window"]?["counts"]?["total"] == 0)
        #expect(past["window"]?["successRate"] == nil)
        #expect(past["window"]?["durationMs"] == ["count": 0])
        #expect(past["window"]?["since"] == "2020-01-01T00:00:00.000Z")
        #expect(past["window"]?["until"] == "2020-01-02T00:00:00.500Z")
        #expect(past["totals"] == counts)

        try await workflows(mix)
        try await recentRuns(mix)
        try await analytics(mix)
        try await errors(mix)

        let a = try await getOK("/v1/dashboard/approvals")
        #expect(a["counts"] == ["total": 2, "pending": 1, "approved": 1, "denied": 0, "expired": 0, "cancelled": 0])
        #expect((Self.number(a["oldestPendingAgeSeconds"]) ?? -1) >= 0 && (Self.number(a["oldestPendingAgeSeconds"]) ?? 99) < 60)
        #expect((Self.number(a["meanTimeToDecisionSeconds"]) ?? -1) > 0)
    }

    func workflows(_ mix: Mix) async throws {
        let list = try await getOK("/v1/dashboard/workflows")["workflows"].list
        #expect(list.map { $0["workflow"]?.stringValue ?? "" } == ["hello", "deploy", "fails", "slow", "timeout"], "busiest first, then by name")
        let byName = Dictionary(list.map { ($0["workflow"]?.stringValue ?? "", $0) }, uniquingKeysWith: { a, _ in a })
        func counts(_ w: String) -> [JSONValue?] { ["runs", "succeeded", "failed", "cancelled"].map { byName[w]?[$0] } }
        #expect(counts("hello") == [3, 3, 0, 0])
        #expect(counts("deploy") == [2, 1, 0, 0])
        #expect(counts("fails") == [2, 0, 2, 0])
        #expect(counts("slow") == [1, 0, 0, 1])
        #expect(counts("timeout") == [1, 0, 1, 0])
        #expect(byName["hello"]?["successRate"] == 1)
        #expect(byName["deploy"]?["successRate"] == 1, "the waiting run has not ended")
        #expect(byName["fails"]?["successRate"] == 0)
        #expect(byName["deploy"]?["durationMs"]?["count"] == 1)
        let hello = mix.runs.filter { $0["workflow"] == "hello" }
        let helloMs = hello.compactMap { Self.number($0["durationMs"]) }.sorted()
        #expect(Self.number(byName["hello"]?["durationMs"]?["p95"]).map { abs($0 - helloMs[2]) < 0.01 } == true)
        #expect(Self.number(byName["hello"]?["durationMs"]?["mean"]).map { abs($0 - helloMs.reduce(0, +) / 3) < 0.01 } == true)
        #expect(byName["hello"]?["lastRunAt"] == hello.last?["createdAt"])
        #expect(byName["deploy"]?["lastRunAt"] == mix.runs.last?["createdAt"])
    }

    func recentRuns(_ mix: Mix) async throws {
        let all = try await getOK("/v1/dashboard/runs")["runs"].list
        #expect(all.compactMap { $0["id"]?.stringValue } == mix.ids.reversed(), "newest first")
        #expect(Set(all.flatMap { $0.objectKeys }) == ["id", "workflow", "status", "createdAt", "durationMs", "errorCode"])
        #expect(all.first?["status"] == "waiting")
        #expect(all.first?["durationMs"] == nil)
        let failed = try await getOK("/v1/dashboard/runs?status=failed")["runs"].list
        #expect(failed.map { $0["errorCode"]?.stringValue ?? "" } == ["Timeout", "ExecFailed", "ExecFailed"])
        let hello = try await getOK("/v1/dashboard/runs?workflow=hello&limit=2")["runs"].list
        #expect(hello.compactMap { $0["id"]?.stringValue } == Array(mix.runIds("hello").reversed().prefix(2)))
        #expect(Self.number(hello.first?["durationMs"]).map { abs($0 - (Self.number(mix.runs[2]["durationMs"]) ?? 0)) < 0.01 } == true)
        #expect(try await getOK("/v1/dashboard/runs?status=running")["runs"].list.isEmpty)
    }

    func analytics(_ mix: Mix) async throws {
        // Three whole hours around the first run's: the runs (made within
        // minutes of it) fall in the second or the third, whenever the test runs.
        let created = mix.runs.compactMap { $0["createdAt"]?.stringValue }.compactMap(Self.date)
        let first = try #require(created.min())
        let hour = (first.timeIntervalSince1970 / 3600).rounded(.down) * 3600
        let since = Date(timeIntervalSince1970: hour - 3600), until = Date(timeIntervalSince1970: hour + 7200)
        let series = try await getOK("/v1/dashboard/analytics?bucket=hour&since=\(Self.iso(since))&until=\(Self.iso(until))")
        let buckets = series["buckets"].list
        #expect(series["bucket"] == "hour")
        #expect(buckets.map { $0["start"]?.stringValue ?? "" } == [0, 1, 2].map { Self.iso(since.addingTimeInterval(Double($0) * 3600)) })
        #expect(buckets.first?["counts"]?["total"] == 0)
        #expect(buckets.first?["avgDurationMs"] == nil)
        func sum(_ key: String) -> Double { buckets.reduce(0) { $0 + (Self.number($1["counts"]?[key]) ?? 0) } }
        #expect([sum("total"), sum("succeeded"), sum("failed"), sum("cancelled"), sum("waiting")] == [9, 4, 3, 1, 1])
        // One workflow; and the default window (the last 24 h, started mid-hour: 25 buckets).
        let hello = try await getOK("/v1/dashboard/analytics?workflow=hello")
        #expect(hello["workflow"] == "hello")
        #expect((24...25).contains(hello["buckets"].list.count))
        #expect(hello["buckets"].list.reduce(0) { $0 + (Self.number($1["counts"]?["succeeded"]) ?? 0) } == 3)
        let days = try await getOK("/v1/dashboard/analytics?bucket=day&since=2026-01-01T12:00:00Z&until=2026-01-03T00:00:00Z")
        #expect(days["buckets"].list.map { $0["start"]?.stringValue ?? "" } == ["2026-01-01T00:00:00.000Z", "2026-01-02T00:00:00.000Z"])
    }

    func errors(_ mix: Mix) async throws {
        let e = try await getOK("/v1/dashboard/errors")
        #expect(e["total"] == 3)
        let byCode = e["byCode"].list
        #expect(byCode.map { [$0["code"], $0["count"]] } == [["ExecFailed", 2], ["Timeout", 1]])
        let lastFails = mix.runs.last { $0["workflow"] == "fails" }
        #expect(byCode.first?["example"]?["runId"] == lastFails?["id"], "the example is the most recent")
        #expect(byCode.first?["example"]?["step"] == "boom")
        #expect(byCode.first?["example"]?["message"]?.stringValue?.contains("something broke") == true)
        #expect(byCode.first?["lastSeen"] == lastFails?["finishedAt"])
        #expect(byCode.first?["workflow"] == nil)
        let byWorkflow = e["byWorkflow"].list
        #expect(byWorkflow.map { [$0["workflow"], $0["code"], $0["count"]] } == [["fails", "ExecFailed", 2], ["timeout", "Timeout", 1]])
        let none = try await getOK("/v1/dashboard/errors?since=2020-01-01T00:00:00Z&until=2020-01-02T00:00:00Z")
        #expect(none["total"] == 0 && none["byCode"].list.isEmpty && none["byWorkflow"].list.isEmpty)
    }

    @Test("GET /runs: limit=2 pages walk every run exactly once; since and until bound createdAt")
    func paging() async throws {
        var created: [String] = []
        for name in ["a", "b", "c"] { created.append(try await gw.run("hello", ["name": .string(name)])["id"]!.stringValue!) }
        let between = Date()
        // Async, several in flight: runs created close together, perhaps in the same millisecond.
        let gw = self.gw
        try await withThrowingTaskGroup(of: String.self) { group in
            for i in 0..<6 { group.addTask { try await gw.run("hello", ["name": .string("n\(i)")], sync: false)["id"]!.stringValue! } }
            for try await id in group { created.append(id) }
        }

        func walk(_ query: String, limit: Int) async throws -> (ids: [String], pages: Int) {
            var ids: [String] = [], pages = 0, before: String?
            repeat {
                let page = try await getOK("/runs?limit=\(limit)\(query)" + (before.map { "&before=\($0)" } ?? ""))
                #expect(page.objectKeys.contains("next"), "next is always there, null on the last page")
                let runs = page["runs"].list
                #expect(runs.count <= limit && !runs.isEmpty)
                ids += runs.compactMap { $0["id"]?.stringValue }
                before = page["next"]?.stringValue
                pages += 1
            } while before != nil && pages < 100
            return (ids, pages)
        }
        let all = try await getOK("/runs?limit=1000")["runs"].list
        let newestFirst = all.compactMap { $0["id"]?.stringValue }
        #expect(Set(newestFirst) == Set(created))
        let stamps = all.compactMap { $0["createdAt"]?.stringValue }
        #expect(stamps == stamps.sorted(by: >), "newest first")

        let two = try await walk("", limit: 2)
        #expect(two.ids == newestFirst, "every run exactly once, in order")
        #expect(two.pages == 5)
        let three = try await walk("", limit: 3)
        #expect(three.ids == newestFirst)
        #expect(three.pages == 3, "a full last page has next: null, not an empty page after it")

        let cut = Self.iso(between)
        let after = try await walk("&since=\(cut)", limit: 2)
        #expect(Set(after.ids) == Set(created.suffix(6)))
        let before = try await walk("&until=\(cut)", limit: 2)
        #expect(before.ids == Array(created.prefix(3).reversed()))
        let window = try await getOK("/runs?since=\(Self.iso(between.addingTimeInterval(-3600)))&until=\(cut)&workflow=hello&status=succeeded")
        #expect(window["runs"].list.compactMap { $0["id"]?.stringValue } == Array(created.prefix(3).reversed()))
        #expect(window["next"] == .null)
    }

    @Test("a bad query parameter is 400 bad_request naming it")
    func badParameters() async throws {
        let cases: [(String, String)] = [
            ("/v1/dashboard/overview?since=yesterday", "since"),
            ("/v1/dashboard/overview?until=2026-13-01T00:00:00Z", "until"),
            ("/v1/dashboard/overview?since=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z", "since must be before until"),
            ("/v1/dashboard/workflows?since=1700000000", "since"),
            ("/v1/dashboard/runs?limit=0", "limit"),
            ("/v1/dashboard/runs?limit=many", "limit"),
            ("/v1/dashboard/runs?status=done", "status"),
            ("/v1/dashboard/runs?workflow=", "workflow"),
            ("/v1/dashboard/analytics?bucket=week", "bucket"),
            ("/v1/dashboard/analytics?bucket=hour&since=2020-01-01T00:00:00Z&until=2026-01-01T00:00:00Z", "bucket"),
            ("/v1/dashboard/analytics?until=soon", "until"),
            ("/v1/dashboard/errors?since=2026-01-01", "since"),
            ("/runs?since=now", "since"),
            ("/runs?until=2026-01-01T25:00:00Z", "until"),
            ("/runs?since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z", "since must be before until"),
            ("/runs?limit=5000", "limit"),
            ("/runs?status=nope", "status"),
            ("/runs?before=run_nope", "before"),
        ]
        for (path, named) in cases {
            let r = try await gw.tcp.get(path)
            #expect(r.status == 400, "\(path)")
            #expect(r.json?["error"]?["code"] == "bad_request", "\(path)")
            #expect(r.errorMessage.contains(named), "\(path): \(r.errorMessage)")
        }
        // At most 1000 buckets: 1000 hours is fine.
        #expect(try await gw.tcp.get("/v1/dashboard/analytics?since=2026-01-01T00:00:00Z&until=2026-02-11T16:00:00Z").status == 200)
        #expect(try await gw.tcp.get("/v1/dashboard/analytics?since=2026-01-01T00:00:00Z&until=2026-02-11T16:00:01Z").status == 400)
    }
}

private extension JSONValue {
    var objectKeys: Set<String> { if case let .object(o) = self { Set(o.keys) } else { [] } }
}
