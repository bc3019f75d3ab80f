import Foundation
import SkelmClient
import Testing
import Workflow

#if canImport(Glibc)
import Glibc
#endif

/// Workers are forked from a warmed-up worker template: what that process may
/// do, that its workers are as sandboxed as exec'd ones, that it is replaced on
/// schedule, and that losing it loses no run.
@Suite("Worker template", .serialized)
final class WorkerTemplateTests {
    static let inc = """
        id: inc
        input: { type: object, properties: { x: { type: integer } }, required: [x] }
        steps:
          - id: add
            exec:
              argv: [sh, -c, 'echo "{\\"x\\": $(( $X + 1 ))}"']
              env: { X: "${{ input.x }}" }
        result: ${{ steps.add.output }}
        """

    static func config(_ workers: String) -> String {
        """
        server: { host: 127.0.0.1, port: 0, maxConcurrentRuns: 4 }
        workers: { minSpare: 2, max: 8, uidBase: UIDBASE, \(workers) }
        defaults: { permissions: { allowedExecutables: [sh, sleep] } }
        """
    }

    static let nap = """
        id: nap
        steps:
          - { id: nap, exec: { argv: [sleep, "10"] } }
        """

    /// The nice value of every thread of `pid` (field 19 of /proc/PID/task/TID/stat).
    static func niceValues(_ pid: Int32) -> [Int] {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
        return tasks.compactMap { tid in
            guard let stat = try? String(contentsOfFile: "/proc/\(pid)/task/\(tid)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { return nil }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            return fields.count > 16 ? Int(fields[16]) : nil
        }
    }

    /// `Name:\tvalue` lines of /proc/<pid>/status.
    static func status(_ pid: Int32) -> [String: String] {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return [:] }
        var fields: [String: String] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 1)
            if parts.count == 2 { fields[String(parts[0])] = parts[1].trimmingCharacters(in: .whitespaces) }
        }
        return fields
    }

    /// The anonymous executable mappings of `pid` (from /proc/PID/smaps): their
    /// size and how much of each is on huge pages, in kB, and whether a mapping
    /// of the skelm binary adjoins it (the copy sits inside the binary's code).
    static func anonymousCode(_ pid: Int32) -> [(size: Int, huge: Int, inBinary: Bool)] {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/smaps", encoding: .utf8) else { return [] }
        struct Mapping { var start = "", end = "", perms = "", path = "", size = 0, huge = 0 }
        var maps: [Mapping] = []
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            if let first = parts.first, first.contains("-"), first.allSatisfy({ $0.isHexDigit || $0 == "-" }), parts.count >= 5 {
                let bounds = first.split(separator: "-").map(String.init)
                maps.append(Mapping(start: bounds[0], end: bounds[1], perms: String(parts[1]), path: parts.count >= 6 ? String(parts[5]) : ""))
            } else if !maps.isEmpty, parts.count >= 2, let kb = Int(parts[1]) {
                if parts[0] == "Size:" { maps[maps.count - 1].size = kb }
                if parts[0] == "AnonHugePages:" { maps[maps.count - 1].huge = kb }
            }
        }
        return maps.indices.filter { maps[$0].perms == "r-xp" && maps[$0].path.isEmpty }.map { i in
            let before = i > 0 && maps[i - 1].path.hasSuffix("/skelm") && maps[i - 1].end == maps[i].start
            let after = i + 1 < maps.count && maps[i + 1].path.hasSuffix("/skelm") && maps[i + 1].start == maps[i].end
            return (maps[i].size, maps[i].huge, before || after)
        }
    }

    /// Whether the kernel gives out transparent huge pages at all.
    static var hugePagesOn: Bool {
        let mode = (try? String(contentsOfFile: "/sys/kernel/mm/transparent_hugepage/enabled", encoding: .utf8)) ?? "[never]"
        return !mode.contains("[never]")
    }

    /// A JSON number as an Int, a pid as pid_t.
    func int(_ v: JSONValue?) -> Int? { if case let .number(n)? = v { Int(n) } else { nil } }
    func pid(_ v: JSONValue?) -> Int32? { int(v).map(Int32.init) }

    static func alive(_ pid: Int32) -> Bool {
        guard let state = status(pid)["State"] else { return false }
        return !state.hasPrefix("Z")
    }

    func pool(_ gw: TestGateway) async throws -> JSONValue {
        try #require(try await gw.get("/v1/workers").json)
    }

    /// The idle workers, once there is at least one (the pool refills after each run).
    func idleWorkers(_ gw: TestGateway) async throws -> [Int32] {
        for _ in 0..<250 {
            let idle = try await pool(gw)["workers"].list.filter { $0["state"]?.stringValue == "idle" }.compactMap { pid($0["pid"]) }
            if !idle.isEmpty { return idle }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw GatewayFailure(description: "no idle worker within 5 s")
    }

    func runInc(_ gw: TestGateway, _ x: Int) async throws {
        let run = try await gw.run("inc", ["x": .number(Double(x))])
        #expect(run["status"]?.stringValue == "succeeded", "\(run)")
        #expect(run["output"]?["x"] == .number(Double(x + 1)))
    }

    @Test("workers are forked from a template that keeps only the capabilities forking needs, and are one thread each")
    func templateIsNarrow() async throws {
        let gw = try await TestGateway.started(workflows: ["inc.workflow.yaml": Self.inc], config: Self.config("spawn: template"))
        defer { gw.cleanupLater() }
        try await runInc(gw, 1)
        let info = try await pool(gw)
        #expect(info["spawn"]?["mode"]?.stringValue == "template")
        let template = try #require(pid(info["spawn"]?["templatePid"]))
        let fields = Self.status(template)
        // kill (5), setgid (6), setuid (7), net_admin (12), sys_admin (21): to make
        // namespaces, switch uid, and deliver its workers' death signal. Nothing
        // else, not even in the bounding set.
        #expect(fields["CapEff"] == "00000000002010e0", "\(fields)")
        #expect(fields["CapPrm"] == "00000000002010e0")
        #expect(fields["CapBnd"] == "00000000002010e0")
        #expect(fields["NoNewPrivs"] == "1")
        #expect(fields["PPid"] == "\(gw.process!.processIdentifier)")

        // The template's code is on huge pages (sk_template_huge_code), and each
        // worker has the same pages from the fork: it faults in no code of its own.
        // The gateway's own code stays the file's.
        let templateCode = Self.anonymousCode(template)
        if Self.hugePagesOn {
            #expect(templateCode.count == 1 && templateCode[0].size >= 2048 && templateCode[0].huge >= templateCode[0].size * 9 / 10
                        && templateCode[0].inBinary,
                    "\(templateCode) \(gw.logText.split(separator: "\n").filter { $0.contains("worker template:") })")
        } else {
            #expect(templateCode.isEmpty, "\(templateCode)")
        }
        #expect(Self.anonymousCode(gw.process!.processIdentifier).isEmpty)

        let workers = info["workers"].list
        #expect(!workers.isEmpty)
        for worker in workers where worker["state"]?.stringValue == "idle" {
            let workerPid = try #require(self.pid(worker["pid"]))
            let w = Self.status(workerPid)
            #expect(w["PPid"] == "\(template)", "worker \(workerPid) is not the template's child: \(w)")
            // Forked workers drop every capability with the uid switch.
            #expect(w["CapEff"] == "0000000000000000")
            #expect(w["CapPrm"] == "0000000000000000")
            #expect(w["Seccomp"] == "2")
            #expect(w["Uid"]?.hasPrefix("0\t") == false)
            // Its tasks run on its one event loop (EventLoopAsGlobalExecutor):
            // no pool threads for each new worker to create.
            #expect(w["Threads"] == "1", "idle worker \(workerPid) has \(w["Threads"] ?? "?") threads")
            let code = Self.anonymousCode(workerPid)
            #expect(code.count == templateCode.count && zip(code, templateCode).allSatisfy { $0.size == $1.size && $0.huge == $1.huge },
                    "worker \(workerPid): \(code), template: \(templateCode)")
            let layers = Set(worker["layers"].list.compactMap(\.stringValue))
            for layer in ["seccomp", "landlock", "netns", "pidns", "mountns", "nonroot", "no_new_privs", "rlimits", "fds"] {
                #expect(layers.contains(layer), "worker \(workerPid) lacks \(layer): \(layers)")
            }
        }
    }

    @Test("a template is replaced after templateRecycleAfter forks, and the old one leaves once its workers are gone")
    func recycles() async throws {
        let gw = try await TestGateway.started(workflows: ["inc.workflow.yaml": Self.inc],
                                 config: Self.config("spawn: template, templateRecycleAfter: 2"))
        defer { gw.cleanupLater() }
        // The first template may already be retired (minSpare 2 used up its 2 forks):
        // find it as the parent of a first worker.
        let firstWorker = try #require(pid(try await pool(gw)["workers"].list.first?["pid"]))
        let first = try #require(Self.status(firstWorker)["PPid"].flatMap { Int32($0) })
        for x in 0..<6 { try await runInc(gw, x) }
        let now = try await pool(gw)
        let generation = try #require(int(now["spawn"]?["templateGeneration"]))
        #expect(generation >= 4, "\(now)")
        for worker in try await idleWorkers(gw) { #expect(Self.status(worker)["PPid"] != "\(first)") }
        var gone = false
        for _ in 0..<250 where !gone {
            gone = !Self.alive(first)
            if !gone { try await Task.sleep(for: .milliseconds(20)) }
        }
        #expect(gone, "retired template \(first) is still running")
    }

    @Test("killing the template takes its idle workers with it; the pool starts a new one and no run is lost")
    func survivesTemplateDeath() async throws {
        let gw = try await TestGateway.started(workflows: ["inc.workflow.yaml": Self.inc], config: Self.config("spawn: template"))
        defer { gw.cleanupLater() }
        try await runInc(gw, 1)
        let info = try await pool(gw)
        let template = try #require(pid(info["spawn"]?["templatePid"]))
        let idle = info["workers"].list.compactMap { self.pid($0["pid"]) }
        #expect(!idle.isEmpty)
        kill(template, SIGKILL)
        // Their death signal: the template's workers go with it.
        var allGone = false
        for _ in 0..<250 where !allGone {
            allGone = idle.allSatisfy { !Self.alive($0) }
            if !allGone { try await Task.sleep(for: .milliseconds(20)) }
        }
        #expect(allGone, "workers of a dead template survived: \(idle.filter(Self.alive))")
        for x in 10..<14 { try await runInc(gw, x) }
        let after = try await pool(gw)
        let replacement = try #require(pid(after["spawn"]?["templatePid"]))
        #expect(replacement != template)
        // The pool saw each of them end (the audit chain says so).
        let audit = try #require(try await gw.get("/audit?action=worker.exited&limit=1000").json)
        let exited = Set(audit["entries"].list.compactMap { $0["details"]?["pid"]?.stringValue })
        for pid in idle { #expect(exited.contains("\(pid)"), "no worker.exited for \(pid)") }
    }

    @Test("spare workers wait at low priority; a worker with a job runs at normal priority, all its threads")
    func sparesWaitAtLowPriority() async throws {
        let gw = try await TestGateway.started(workflows: ["inc.workflow.yaml": Self.inc, "nap.workflow.yaml": Self.nap],
                                 config: Self.config("spawn: template"))
        defer { gw.cleanupLater() }
        try await runInc(gw, 1)
        for worker in try await idleWorkers(gw) {
            let nice = Self.niceValues(worker)
            #expect(!nice.isEmpty && nice.allSatisfy { $0 == 10 }, "spare worker \(worker): nice \(nice)")
        }
        let run = try await gw.run("nap", [:], sync: false)
        // A busy worker that is still there to be read: on a loaded machine the
        // pool's view can lag a worker that has already exited.
        var busy: Int32?
        var nice: [Int] = []
        for _ in 0..<1500 where busy == nil {
            if let candidate = try await pool(gw)["workers"].list.first(where: { $0["state"]?.stringValue == "busy" }).flatMap({ pid($0["pid"]) }) {
                nice = Self.niceValues(candidate)
                if !nice.isEmpty { busy = candidate }
            }
            if busy == nil { try await Task.sleep(for: .milliseconds(20)) }
        }
        let worker = try #require(busy, "no busy worker could be read")
        #expect(!nice.isEmpty && nice.allSatisfy { $0 == 0 }, "busy worker \(worker): nice \(nice)")
        _ = try await gw.waitForStatus(try #require(run["id"]?.stringValue), ["succeeded"])
    }

    @Test("every run's workspace is gone after it, whether the step left files in it or not")
    func workspacesAreRemoved() async throws {
        let litter = """
            id: litter
            steps:
              - id: write
                exec: { argv: [sh, -c, 'mkdir -p a/b && echo x > a/b/c && echo y > "$TMPDIR/t" && echo done'] }
            """
        let gw = try await TestGateway.started(workflows: ["inc.workflow.yaml": Self.inc, "litter.workflow.yaml": litter],
                                 config: Self.config("spawn: template").replacingOccurrences(of: "[sh, sleep]", with: "[sh, sleep, mkdir]"))
        defer { gw.cleanupLater() }
        try await runInc(gw, 1)
        let run = try await gw.run("litter")
        #expect(run["status"]?.stringValue == "succeeded", "\(run)")
        #expect(run["output"]?.stringValue == "done")
        let root = gw.stateDir + "/workspaces"
        var left: [String] = []
        for _ in 0..<100 {
            left = ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).filter { !$0.hasPrefix(".") }
            if left.isEmpty { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(left.isEmpty, "workspaces left behind: \(left)")
    }

    @Test("workers.spawn: exec starts every worker by exec, as the gateway's own child")
    func execMode() async throws {
        let gw = try await TestGateway.started(workflows: ["inc.workflow.yaml": Self.inc], config: Self.config("spawn: exec"))
        defer { gw.cleanupLater() }
        try await runInc(gw, 41)
        let info = try await pool(gw)
        #expect(info["spawn"]?["mode"]?.stringValue == "exec")
        #expect(info["spawn"]?["templatePid"] == nil)
        #expect(processes(matching: "worker-template").allSatisfy { Self.status($0)["PPid"] != "\(gw.process!.processIdentifier)" })
        for worker in info["workers"].list where worker["state"]?.stringValue == "idle" {
            let workerPid = try #require(self.pid(worker["pid"]))
            let w = Self.status(workerPid)
            #expect(w["PPid"] == "\(gw.process!.processIdentifier)")
            #expect(w["Threads"] == "1", "idle exec'd worker \(workerPid)")
        }
    }
}
