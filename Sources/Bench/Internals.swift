import ControlPlane
import Foundation
import SkelmClient
import Workflow

#if canImport(Glibc)
import Glibc
#endif

/// Measurements of the gateway's own parts, next to the end-to-end figures.
enum Internals {
    /// Busy time of the whole machine so far, in jiffies (user, nice, system, irq,
    /// softirq; not idle, iowait or steal): what every process together spent.
    static func busyJiffies() -> Int {
        guard let stat = try? String(contentsOfFile: "/proc/stat", encoding: .utf8),
              let cpu = stat.split(separator: "\n").first else { return 0 }
        let f = cpu.split(separator: " ").dropFirst().compactMap { Int($0) }
        guard f.count >= 7 else { return 0 }
        return f[0] + f[1] + f[2] + f[5] + f[6]
    }

    /// Context switches and tasks created (processes and threads: every clone),
    /// machine-wide since boot, from /proc/stat's `ctxt` and `processes`. Counts,
    /// not times: they move with what a build does, not with how fast the host
    /// happens to be.
    static func schedulerCounts() -> (switches: Int, tasks: Int) {
        guard let stat = try? String(contentsOfFile: "/proc/stat", encoding: .utf8) else { return (0, 0) }
        var switches = 0, tasks = 0
        for line in stat.split(separator: "\n") {
            let f = line.split(separator: " ")
            guard f.count == 2, let n = Int(f[1]) else { continue }
            if f[0] == "ctxt" { switches = n } else if f[0] == "processes" { tasks = n }
        }
        return (switches, tasks)
    }

    /// Page faults machine-wide since boot (/proc/vmstat's `pgfault`): a count
    /// too, of what every process (a worker faulting in the code it runs, the
    /// pages it writes) costs the kernel.
    static func pageFaults() -> Int {
        guard let vmstat = try? String(contentsOfFile: "/proc/vmstat", encoding: .utf8) else { return 0 }
        for line in vmstat.split(separator: "\n") where line.hasPrefix("pgfault ") {
            return Int(line.dropFirst(8)) ?? 0
        }
        return 0
    }

    /// Appends/s with every append durable (64 concurrent appenders, group commit),
    /// then verified entries/s over a log of `verifyEntries`.
    static func audit(appends: Int, verifyEntries: Int) async throws -> (appendsPerSec: Double, verifiedPerSec: Double) {
        let dir = "/tmp/skelm-bench-audit-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let log = try AuditLog(stateDir: dir, checkpointEvery: 10_000)
        let details = ["workflow": "inc", "status": "succeeded"]
        func batch(_ n: Int) async throws -> Double {
            let start = ContinuousClock.now
            try await withThrowingTaskGroup(of: Void.self) { group in
                for w in 0..<64 {
                    group.addTask {
                        var i = w
                        while i < n {
                            try await log.append(actor: "bench", action: "run.finished", runId: "run_\(i)", details: details)
                            i += 64
                        }
                    }
                }
                try await group.waitForAll()
            }
            return Double(n) / (elapsedMs(since: start) / 1000)
        }
        let rate = try await batch(appends)
        if verifyEntries > appends { _ = try await batch(verifyEntries - appends) }
        await log.close()
        let start = ContinuousClock.now
        let report = AuditVerifier.verify(stateDir: dir)
        guard report.ok else { fail("audit verify failed: \(String(describing: report.firstBreak))") }
        return (rate, Double(report.entries) / (elapsedMs(since: start) / 1000))
    }

    /// Opens `subscribers` event streams on one run and measures, for each, how
    /// long after the terminal event was committed it arrived.
    static func sseFanout(_ client: GatewayClient, subscribers: Int) async throws -> Stats {
        let run = try await client.post("/runs", json: ["workflow": "slow", "input": [:], "mode": "async"])
        guard case let .string(id)? = run.json?["id"] else { fail("cannot start the fan-out run: \(run.errorMessage)") }
        let arrivals = try await withThrowingTaskGroup(of: Double?.self) { group in
            for _ in 0..<subscribers {
                group.addTask {
                    var parser = SSEParser()
                    var arrived: Double?
                    try await client.exchange(.GET, "/runs/\(id)/events", headers: [("Accept", "text/event-stream")]) { _, chunk in
                        guard let chunk else { return true }
                        for e in parser.feed(String(decoding: chunk.readableBytesView, as: UTF8.self)) where e.type == "run.succeeded" {
                            arrived = Date().timeIntervalSince1970
                        }
                        return arrived == nil
                    }
                    return arrived
                }
            }
            var out: [Double] = []
            for try await a in group { if let a { out.append(a) } }
            return out
        }
        let events = try await client.get("/runs/\(id)/events", headers: [("Accept", "application/json")])
        guard let terminal = events.json?["events"].flatMap({ if case let .array(a) = $0 { a.last } else { nil } }),
              let at = terminal["at"]?.stringValue, let committed = ISO8601.parse(at) else { fail("no terminal event") }
        return Stats(samples: arrivals.map { max(0, ($0 - committed) * 1000) })
    }

    static func idleWorkerPids(_ pool: JSONValue?) -> [Int32] {
        guard case let .array(workers)? = pool?["workers"] else { return [] }
        var pids: [Int32] = []
        for w in workers where w["state"] == "idle" {
            if case let .number(n)? = w["pid"] { pids.append(Int32(n)) }
        }
        return pids
    }

    static func averageRSSKB(_ pids: [Int32]) -> Double {
        pids.isEmpty ? 0 : pids.map(rssKB).reduce(0, +) / Double(pids.count)
    }

    /// What a process's memory costs the host, in KiB, from `smaps_rollup`: its
    /// proportional share of pages shared with others (PSS: a forked worker shares
    /// most of its resident pages with the template and its siblings) and the
    /// pages only it holds (private).
    static func memoryKB(_ pid: Int32) -> (pss: Double, private: Double) {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/smaps_rollup", encoding: .utf8) else { return (0, 0) }
        func field(_ name: String) -> Double {
            text.split(separator: "\n").first { $0.hasPrefix(name + ":") }
                .flatMap { $0.split(separator: " ").dropFirst().first }.flatMap { Double($0) } ?? 0
        }
        return (field("Pss"), field("Private_Clean") + field("Private_Dirty"))
    }

    static func averageMemoryKB(_ pids: [Int32]) -> (pss: Double, private: Double) {
        guard !pids.isEmpty else { return (0, 0) }
        let all = pids.map(memoryKB)
        return (all.map(\.pss).reduce(0, +) / Double(all.count), all.map(\.private).reduce(0, +) / Double(all.count))
    }

    /// CPU a process used itself, and what its reaped children used (utime+stime,
    /// cutime+cstime of /proc/PID/stat), in clock ticks (10 ms).
    static func cpuTicks(_ pid: Int32) -> (own: Int, children: Int) {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return (0, 0) }
        // Fields after the command (which may hold spaces): state is field 3, utime 14.
        let f = stat[stat.index(after: close)...].split(separator: " ").compactMap { Int($0) }
        guard f.count >= 14 else { return (0, 0) }
        return (f[10] + f[11], f[12] + f[13])
    }

    /// The gateway's worker templates: its children named `skelm worker-template`
    /// (two for a moment while one is recycled).
    static func templatePids(of gateway: Int32) -> [Int32] {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap { entry -> Int32? in
            guard let pid = Int32(entry),
                  let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { return nil }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            // The arguments are NUL-separated.
            guard fields.count > 1, Int32(fields[1]) == gateway,
                  let cmd = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline"),
                  String(decoding: cmd.map { $0 == 0 ? 32 : $0 }, as: UTF8.self).hasPrefix("skelm worker-template") else { return nil }
            return pid
        }
    }

    /// Where a phase's CPU went, per run, in ms: the control plane itself, the
    /// worker template itself, the workers and their steps (the template's
    /// reaped children), and the rest of the machine's busy time (kernel
    /// threads such as network-namespace teardown, and anything else running).
    struct CPUSplit {
        var controlPlane, template, workers, rest: Double
    }

    struct CPUSnapshot {
        var total: Int, gateway: (own: Int, children: Int)
        /// Per live template: its own time and its reaped workers'.
        var templates: [Int32: (own: Int, children: Int)]
    }

    static func cpuSnapshot(gateway: Int32) -> CPUSnapshot {
        let templates = Dictionary(uniqueKeysWithValues: templatePids(of: gateway).map { ($0, cpuTicks($0)) })
        return CPUSnapshot(total: busyJiffies(), gateway: cpuTicks(gateway), templates: templates)
    }

    /// A template recycled meanwhile (`workers.templateRecycleAfter`) is gone from
    /// `b`: the gateway reaped it, so its own time and its workers' arrive together
    /// in the gateway's children's time, counted here as workers' (a template's own
    /// share is a few percent of it). The part of its time before `a` is taken off.
    static func cpuSplit(from a: CPUSnapshot, to b: CPUSnapshot, runs: Int) -> CPUSplit {
        let ms = { (ticks: Int) in Double(ticks) * 10 / Double(max(1, runs)) }
        let cp = b.gateway.own - a.gateway.own
        var tpl = 0, workers = b.gateway.children - a.gateway.children
        for (pid, now) in b.templates {
            let before = a.templates[pid] ?? (0, 0)
            tpl += now.own - before.own
            workers += now.children - before.children
        }
        for (pid, before) in a.templates where b.templates[pid] == nil { workers -= before.own + before.children }
        return CPUSplit(controlPlane: ms(cp), template: ms(tpl), workers: ms(workers), rest: ms(max(0, (b.total - a.total) - cp - tpl - workers)))
    }

    /// Resident memory of a process, in KiB.
    static func rssKB(_ pid: Int32) -> Double {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }) else { return 0 }
        return Double(line.split(separator: " ").dropFirst().first ?? "0") ?? 0
    }

    /// The line of `wrk`'s output that starts with `prefix`; nil when wrk is not
    /// installed or printed no such line.
    static func runWrk(_ arguments: [String], line prefix: String) -> Substring? {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/wrk") else { return nil }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/wrk")
        p.arguments = arguments
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        guard (try? p.run()) != nil else { return nil }
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        return text.split(separator: "\n").first { $0.hasPrefix(prefix) }
    }

    /// Requests/s from `wrk` (64 connections), or nil when wrk is not installed.
    static func wrk(_ url: String, seconds: Int) -> Double? {
        guard let line = runWrk(["-t2", "-c64", "-d\(seconds)s", url], line: "Requests/sec:") else { return nil }
        return Double(line.split(separator: " ").last ?? "")
    }

    /// `runs` sync runs of `inc` one after another on one keep-alive connection
    /// (wrk, one thread, one connection), each answer checked; p50 and p99 in ms.
    /// The way a long-lived client calls the gateway, as the peers' clients do.
    static func wrkSequential(_ url: String, runs: Int) -> (runs: Int, p50: Double, p99: Double)? {
        let script = "/tmp/skelm-bench-seq-\(getpid()).lua"
        defer { try? FileManager.default.removeItem(atPath: script) }
        let lua = """
            wrk.method = "POST"
            wrk.body = '{"workflow":"inc","input":{"x":41},"mode":"sync"}'
            wrk.headers["Content-Type"] = "application/json"
            local n = 0
            local bad = 0
            response = function(status, headers, body)
              n = n + 1
              if status ~= 200 or not string.find(body, '"x":42', 1, true) then bad = bad + 1 end
              if n >= \(runs) then wrk.thread:stop() end
            end
            done = function(summary, latency, requests)
              io.write(string.format("SEQ %d %d %.3f %.3f\\n", summary.requests, bad,
                                     latency:percentile(50) / 1000, latency:percentile(99) / 1000))
            end
            """
        guard (try? lua.write(toFile: script, atomically: true, encoding: .utf8)) != nil else { return nil }
        // wrk stops sending after `runs` but waits out its duration: give it about
        // 30 ms a run (six times what a run takes here) and report how many it did.
        guard let line = runWrk(["-t1", "-c1", "-d\(runs * 30 / 1000 + 2)s", "-s", script, url + "/runs"], line: "SEQ ") else { return nil }
        let f = line.split(separator: " ")
        guard f.count == 5, let done = Int(f[1]), let bad = Int(f[2]) else { return nil }
        if bad > 0 { fail("\(bad) of the keep-alive runs answered something else than {\"x\": 42}") }
        return (done, Double(f[3]) ?? 0, Double(f[4]) ?? 0)
    }
}

enum ISO8601 {
    static func parse(_ s: String) -> Double? {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f.date(from: s)?.timeIntervalSince1970
    }
}
