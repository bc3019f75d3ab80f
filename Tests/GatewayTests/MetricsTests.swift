import Foundation
import SkelmClient
import Testing
import Workflow

#if canImport(Glibc)
import Glibc
#endif

/// One scrape of `GET /metrics`, parsed as Prometheus text: each sample by its
/// name and its labels (sorted), and the declared type of each family.
struct Scrape {
    var samples: [String: Double] = [:]
    var types: [String: String] = [:]
    /// Lines that are neither a comment nor `name{labels} value`.
    var malformed: [String] = []

    init(_ text: String) {
        for line in text.split(separator: "\n", omittingEmptySubsequences: true).map(String.init) {
            if line.hasPrefix("# TYPE ") {
                let parts = line.split(separator: " ")
                if parts.count == 4 { types[String(parts[2])] = String(parts[3]) } else { malformed.append(line) }
                continue
            }
            if line.hasPrefix("#") { continue }
            guard let (key, value) = Self.sample(line) else { malformed.append(line); continue }
            samples[key] = value
        }
    }

    /// `name{b="y",a="x"} 1.5` → (`name{a="x",b="y"}`, 1.5); `name 2` → (`name{}`, 2).
    static func sample(_ line: String) -> (String, Double)? {
        guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { return nil }
        let series = line[..<space]
        let name = series.prefix { $0 != "{" }
        guard let first = name.first, first.isLetter || first == "_" || first == ":",
              name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == ":") }) else { return nil }
        let rest = series.dropFirst(name.count)
        if rest.isEmpty { return ("\(name){}", value) }
        guard rest.hasPrefix("{"), rest.hasSuffix("}") else { return nil }
        var labels: [String] = []
        for pair in rest.dropFirst().dropLast().split(separator: ",") {
            guard let eq = pair.firstIndex(of: "="), pair[pair.index(after: eq)...].hasPrefix("\""), pair.hasSuffix("\""),
                  pair[..<eq].allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" }) else { return nil }
            labels.append(String(pair))
        }
        return ("\(name){\(labels.sorted().joined(separator: ","))}", value)
    }

    subscript(_ series: String) -> Double { samples[series] ?? 0 }
}

extension TestGateway {
    func scrape(_ client: GatewayClient? = nil) async throws -> Scrape {
        let r = try await (client ?? self.client).get("/metrics")
        guard r.status == 200 else { throw GatewayFailure(description: "GET /metrics answered \(r.status): \(r.errorMessage)") }
        return Scrape(String(decoding: r.body, as: UTF8.self))
    }

    /// The head of a raw response over TCP: GatewayClient hands out no headers.
    func rawHead(_ path: String, token: String) async throws -> String {
        guard case let .tcp(_, port) = tcp.target else { throw GatewayFailure(description: "no tcp listener") }
        let request = "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nAuthorization: Bearer \(token)\r\nConnection: close\r\n\r\n"
        return try await withCheckedThrowingContinuation { cont in
            // A blocking socket on a thread of its own, not one of the few the async tests share.
            Thread {
                guard let fd = connectLoopback(port: port) else { return cont.resume(throwing: GatewayFailure(description: "connect: \(errno)")) }
                defer { close(fd) }
                _ = request.withCString { send(fd, $0, strlen($0), 0) }
                var data = [UInt8](), chunk = [UInt8](repeating: 0, count: 65536)
                while true {
                    let n = recv(fd, &chunk, chunk.count, 0)
                    if n <= 0 { break }
                    data += chunk[..<n]
                }
                let text = String(decoding: data, as: UTF8.self)
                cont.resume(returning: String(text[..<(text.range(of: "\r\n\r\n")?.lowerBound ?? text.endIndex)]))
            }.start()
        }
    }

    /// Polls until `done` holds of a scrape, and returns the last one.
    func scrape(until done: (Scrape) -> Bool, timeout: Duration = .seconds(10)) async throws -> Scrape {
        let deadline = ContinuousClock.now + timeout
        var last = try await scrape()
        while !done(last), ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(50))
            last = try await scrape()
        }
        return last
    }
}

@Suite("Metrics: GET /metrics", .serialized)
final class MetricsTests {
    let gw: TestGateway

    init() async throws {
        var workflows = TestWorkflows.all
        workflows["notallowed.workflow.yaml"] = """
            id: notallowed
            steps:
              - { id: who, exec: { argv: [/usr/bin/id] } }
            """
        gw = try await TestGateway.started(workflows: workflows)
    }

    deinit { gw.cleanupLater() }

    @Test("counters move by exactly what the runs did, and step durations are labelled by kind")
    func countersFollowRuns() async throws {
        let before = try await gw.scrape()
        #expect(try await gw.run("hello", ["name": "metrics"])["status"] == "succeeded")
        #expect(try await gw.run("fails")["status"] == "failed")
        let denied = try await gw.run("notallowed")
        #expect(denied["error"]?["code"] == "PermissionDenied")
        #expect(try await gw.run("fanout", ["numbers": [1, 2]])["status"] == "succeeded")
        // Workers exit (and are counted) just after their runs end, and their replacements follow.
        // A worker slow to exit after its job (a loaded host) is killed as `lingered`.
        let ended = [#"skelm_workers_exited_total{cause="completed"}"#, #"skelm_workers_exited_total{cause="lingered"}"#]
        let after = try await gw.scrape { now in
            now["skelm_workers_spawned_total{}"] >= before["skelm_workers_spawned_total{}"] + 4
                && ended.map { now[$0] - before[$0] }.reduce(0, +) >= 4
        }
        func delta(_ series: String) -> Double { after[series] - before[series] }

        #expect(delta("skelm_runs_started_total{}") == 4)
        #expect(delta(#"skelm_runs_finished_total{status="succeeded"}"#) == 2)
        #expect(delta(#"skelm_runs_finished_total{status="failed"}"#) == 2)
        #expect(delta(#"skelm_runs_finished_total{status="cancelled"}"#) == 0)
        #expect(delta(#"skelm_permission_denials_total{dimension="allowedExecutables"}"#) == 1)
        #expect(delta(#"skelm_permission_denials_total{dimension="other"}"#) == 0)
        // hello/greet, fails/ok, fanout's sq ×2, label and total; fails/boom and notallowed/who.
        #expect(delta(#"skelm_step_duration_seconds_count{kind="exec",outcome="succeeded"}"#) == 6)
        #expect(delta(#"skelm_step_duration_seconds_count{kind="exec",outcome="failed"}"#) == 2)
        #expect(delta(#"skelm_step_duration_seconds_count{kind="parallel",outcome="succeeded"}"#) == 1)
        #expect(delta(#"skelm_step_duration_seconds_count{kind="forEach",outcome="succeeded"}"#) == 1)
        #expect(delta(#"skelm_step_duration_seconds_sum{kind="exec",outcome="succeeded"}"#) > 0)
        #expect(delta(#"skelm_step_duration_seconds_bucket{kind="exec",le="+Inf",outcome="succeeded"}"#) == 6)
        let exits = after.samples.keys.filter { $0.hasPrefix("skelm_workers_exited_total") }.map { "\($0): \(delta($0))" }
        #expect(ended.map(delta).reduce(0, +) == 4, "\(exits)")
        #expect(delta("skelm_workers_spawned_total{}") >= 4, "each run's worker is replaced")
        #expect(delta("skelm_worker_spawn_seconds_count{}") == delta("skelm_workers_spawned_total{}"))
        #expect(delta("skelm_worker_dispatch_seconds_count{}") == 4)
        #expect(after.types["skelm_step_duration_seconds"] == "histogram")
        #expect(after.types["skelm_runs_started_total"] == "counter")
        #expect(after.types["skelm_workers_live"] == "gauge")
        #expect(after["skelm_runs_queued{}"] == 0)
        #expect(after["skelm_runs_running{}"] == 0)
        #expect(after["skelm_approvals_pending{}"] == 0)
        #expect(after["skelm_workers_live{}"] >= 1)
        #expect(after.samples[#"skelm_egress_decisions_total{decision="denied"}"#] != nil, "every series exists from the start")
    }

    @Test("the text is Prometheus exposition, served as text/plain version 0.0.4")
    func exposition() async throws {
        let r = try await gw.get("/metrics")
        #expect(r.status == 200)
        let text = String(decoding: r.body, as: UTF8.self)
        let scrape = Scrape(text)
        #expect(scrape.malformed.isEmpty, "\(scrape.malformed)")
        #expect(scrape.samples.count > 50)
        for (name, type) in scrape.types {
            #expect(["counter", "gauge", "histogram"].contains(type), "\(name): \(type)")
            #expect(name.hasPrefix("skelm_"), "\(name)")
            if type == "counter" { #expect(name.hasSuffix("_total"), "\(name)") }
            if type == "histogram" { #expect(name.hasSuffix("_seconds"), "\(name)") }
        }
        // Every sample belongs to a declared family.
        let families = Set(scrape.types.keys)
        for series in scrape.samples.keys {
            let name = String(series.prefix { $0 != "{" })
            let family = ["_bucket", "_sum", "_count"].reduce(name) { n, s in families.contains(n) ? n : (n.hasSuffix(s) ? String(n.dropLast(s.count)) : n) }
            #expect(families.contains(family), "\(series)")
        }
    }
}

/// `/metrics` is a read like any other: a viewer's token, and nothing without one.
@Suite("Metrics: bearer authentication", .serialized)
final class MetricsAuthTests {
    let gw: TestGateway
    static let viewer = "viewer-metrics-0123456789"

    init() async throws {
        let gw = try TestGateway(workflows: TestWorkflows.all, config: TestGateway.config(server:
            "{ host: 127.0.0.1, port: 0, auth: { mode: bearer, tokens: [ { name: prometheus, scope: viewer, env: METRICS_TOK } ] } }"))
        gw.environment = ["METRICS_TOK": Self.viewer]
        try await gw.start()
        self.gw = gw
    }

    deinit { gw.cleanupLater() }

    @Test("no token is 401; a viewer's token reads the metrics")
    func viewerScope() async throws {
        var anonymous = gw.tcp!
        anonymous.token = nil
        #expect(try await anonymous.get("/metrics").status == 401)
        var viewer = gw.tcp!
        viewer.token = Self.viewer
        let scrape = try await gw.scrape(viewer)
        #expect(scrape.samples["skelm_runs_started_total{}"] != nil)
        let head = try await gw.rawHead("/metrics", token: Self.viewer).lowercased()
        #expect(head.hasPrefix("http/1.1 200"), "\(head)")
        #expect(head.contains("content-type: text/plain; version=0.0.4; charset=utf-8"), "\(head)")
    }
}

/// `POST /v1/workers/:id/drain` and `GET /v1/workers/:id`.
@Suite("Workers: drain", .serialized)
final class WorkerDrainTests {
    let gw: TestGateway

    init() async throws {
        gw = try await TestGateway.started(workflows: TestWorkflows.all)
    }

    deinit { gw.cleanupLater() }

    func pool() async throws -> JSONValue {
        try #require(try await gw.get("/v1/workers").json)
    }

    func pid(_ v: JSONValue?) -> Int? {
        if case let .number(n)? = v { return Int(n) }
        return nil
    }

    /// Polls the listing until `done` holds of it.
    func pool(until done: (JSONValue) -> Bool) async throws -> JSONValue {
        var last = try await pool()
        for _ in 0..<200 where !done(last) {
            try await Task.sleep(for: .milliseconds(50))
            last = try await pool()
        }
        return last
    }

    @Test("an idle worker is retired now, replaced to keep minSpare, and the drain is audited")
    func drainIdle() async throws {
        let ready = try await pool { $0["idle"] == 1 && $0["live"] == 1 }
        let idle = try #require(ready["workers"].list.first { $0["state"] == "idle" }.flatMap { pid($0["pid"]) })
        let one = try await gw.get("/v1/workers/\(idle)")
        #expect(one.status == 200)
        #expect(pid(one.json?["pid"]) == idle)
        let before = try await gw.scrape()

        let r = try await gw.post("/v1/workers/\(idle)/drain", [:])
        #expect(r.status == 200, "\(r.errorMessage)")
        #expect(pid(r.json?["pid"]) == idle)
        #expect(r.json?["state"] == "draining")

        let after = try await pool { p in
            !p["workers"].list.contains { pid($0["pid"]) == idle } && p["idle"] == 1 && p["live"] == 1
        }
        #expect(!after["workers"].list.contains { pid($0["pid"]) == idle }, "the drained worker is gone: \(after)")
        #expect(after["idle"] == 1, "a replacement keeps minSpare")
        #expect(try await gw.get("/v1/workers/\(idle)").status == 404)

        let audited = try await gw.get("/audit?action=worker.drained").json?["entries"].list ?? []
        let entry = audited.first { $0["details"]?["pid"]?.stringValue == "\(idle)" }
        #expect(entry != nil, "\(audited)")
        #expect(entry?["actor"]?.stringValue?.hasPrefix("unix:") == true)

        let scrape = try await gw.scrape { $0[#"skelm_workers_exited_total{cause="drained"}"#] > before[#"skelm_workers_exited_total{cause="drained"}"#] }
        #expect(scrape[#"skelm_workers_exited_total{cause="drained"}"#] - before[#"skelm_workers_exited_total{cause="drained"}"#] == 1)
        #expect(scrape["skelm_workers_drained_total{}"] - before["skelm_workers_drained_total{}"] == 1)
    }

    @Test("a busy worker is marked draining, finishes its job, then exits")
    func drainBusy() async throws {
        // Long enough that a loaded machine still asks while the job runs.
        let run = try await gw.run("slow", ["seconds": 15], sync: false)
        let id = try #require(run["id"]?.stringValue)
        _ = try await gw.waitForStatus(id, ["running"])
        let listing = try await pool { p in p["workers"].list.contains { $0["state"] == "busy" } }
        let busy = try #require(listing["workers"].list.first { $0["state"] == "busy" }.flatMap { pid($0["pid"]) })
        let r = try await gw.post("/v1/workers/\(busy)/drain", [:])
        #expect(r.status == 200, "\(r.errorMessage)")
        #expect(r.json?["state"] == "draining")
        #expect(try await gw.get("/v1/workers/\(busy)").json?["state"] == "draining")
        #expect(try await gw.waitForStatus(id, ["succeeded", "failed"])["status"] == "succeeded", "its job is not cut short")
        let after = try await pool { p in !p["workers"].list.contains { pid($0["pid"]) == busy } }
        #expect(!after["workers"].list.contains { pid($0["pid"]) == busy })
    }

    @Test("an unknown pid is 404 not_found")
    func unknown() async throws {
        for path in ["/v1/workers/999999999/drain", "/v1/workers/nope/drain"] {
            let r = try await gw.post(path, [:])
            #expect(r.status == 404, "\(path)")
            #expect(r.json?["error"]?["code"] == "not_found", "\(path)")
        }
        #expect(try await gw.get("/v1/workers/999999999").status == 404)
    }
}
