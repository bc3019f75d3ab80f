import Foundation
import SkelmClient
import Testing
import Workflow

#if canImport(Glibc)
import Glibc
#endif

@Suite("Running as a service")
struct ServiceLifecycleTests {
    @Test("one gateway per state dir: a second start is refused naming the first; the lock of a killed gateway is taken over")
    func stateDirLock() async throws {
        let gw = try await TestGateway.started(workflows: TestWorkflows.all)
        defer { gw.cleanupLater() }
        let second = try await gw.cli(["gateway", "start"])
        #expect(second.status == 2, "\(second)")
        #expect(second.stderr.contains("another gateway (pid \(gw.process!.processIdentifier))"), "\(second.stderr)")
        #expect(try await gw.get("/health").status == 200)
        await gw.stop(signal: SIGKILL)
        try await gw.start()
        #expect(try await gw.get("/health").status == 200)
    }

    @Test("start --detach returns once the gateway answers; status, then stop --timeout, which drains it")
    func detachStatusStop() async throws {
        let gw = try TestGateway(workflows: TestWorkflows.all)
        defer { gw.cleanupLater() }
        let started = try await gw.cli(["gateway", "start", "--detach", "--json"])
        #expect(started.status == 0, "\(started)")
        let pid = try #require(JSONValue.parse(started.stdout)?["pid"].flatMap { if case let .number(n) = $0 { Int32(n) } else { nil } })
        // A session of its own: no controlling terminal whose hangup could reach it.
        #expect(getsid(pid) == pid)
        let status = try await gw.cli(["gateway", "status", "--json"])
        #expect(status.status == 0, "\(status)")
        let s = JSONValue.parse(status.stdout)
        #expect(s?["state"] == "running")
        #expect(s?["configPath"]?.stringValue == gw.configPath)
        #expect(s?["sandbox"]?["required"].list.isEmpty == false)
        let text = try await gw.cli(["gateway", "status"])
        #expect(text.stdout.contains("state     running"))
        let stop = try await gw.cli(["gateway", "stop", "--timeout", "60"])
        #expect(stop.status == 0, "\(stop)")
        let after = try await gw.cli(["gateway", "status"])
        #expect(after.status == 3)
        #expect(FileManager.default.fileExists(atPath: gw.stateDir + "/gateway.log"))
        let again = try await gw.cli(["gateway", "stop"])
        #expect(again.status == 3)
    }

    @Test("install --systemd writes a hardened unit for this binary and config (and systemd-analyze accepts it when present)")
    func systemdUnit() async throws {
        let gw = try TestGateway(workflows: TestWorkflows.all)
        defer { gw.cleanupLater() }
        let units = gw.dir + "/units"
        let install = try await gw.cli(["gateway", "install", "--systemd", "--unit-dir", units, "--name", "skelm-test"])
        #expect(install.status == 0, "\(install)")
        let unit = try String(contentsOfFile: units + "/skelm-test.service", encoding: .utf8)
        for line in ["ExecStart=\(skelmBinary) gateway start --config \(gw.configPath)", "ExecReload=/bin/kill -HUP $MAINPID",
                     "NoNewPrivileges=yes", "ProtectSystem=strict", "ReadWritePaths=\(gw.stateDir)", "PrivateTmp=yes",
                     "RestrictSUIDSGID=yes", "KillMode=mixed", "TimeoutStopSec=60", "LimitNOFILE=65536"] {
            #expect(unit.contains(line + "\n"), "missing \(line)")
        }
        #expect(try await gw.cli(["gateway", "install", "--systemd", "--unit-dir", units, "--name", "skelm-test"]).status == 1)
        #expect(try await gw.cli(["gateway", "install", "--unit-dir", units]).status == 64)
        if FileManager.default.isExecutableFile(atPath: "/usr/bin/systemd-analyze") {
            let verified = try await runCommand(["systemd-analyze", "verify", units + "/skelm-test.service"])
            #expect(verified.status == 0, "\(verified.out)")
        }
        let removed = try await gw.cli(["gateway", "uninstall", "--unit-dir", units, "--name", "skelm-test"], withConfig: false)
        #expect(removed.status == 0, "\(removed)")
        #expect(!FileManager.default.fileExists(atPath: units + "/skelm-test.service"))
    }

    @Test("50 async runs, the control plane SIGKILLed midway: after a restart every run ends, each completed step ran once, the audit chain verifies")
    func crashMidway() async throws {
        let gw = try await TestGateway.started(workflows: TestWorkflows.all)
        defer { gw.cleanupLater() }
        var ids: [String] = []
        for i in 0..<50 {
            ids.append(try await gw.run("slow", ["seconds": .string(i % 2 == 0 ? "0.2" : "0.5")], sync: false)["id"]!.stringValue!)
        }
        // Some have ended, some are mid-step, most are queued.
        for _ in 0..<400 {
            let done = try await gw.get("/runs?status=succeeded&limit=1000").json?["runs"].list.count ?? 0
            if done >= 5 { break }
            try await Task.sleep(for: .milliseconds(25))
        }
        await gw.stop(signal: SIGKILL)
        try await gw.start()
        for id in ids {
            let run = try await gw.waitForStatus(id, ["succeeded", "failed", "cancelled"], timeout: .seconds(120))
            #expect(run["status"] == "succeeded", "\(id): \(run)")
            let events = try await gw.get("/runs/\(id)/events", headers: [("Accept", "application/json")]).json?["events"].list ?? []
            for step in ["first", "nap", "last"] {
                let finished = events.filter { $0["type"] == "step.finished" && $0["step"]?.stringValue == step }.count
                #expect(finished == 1, "\(id): \(step) finished \(finished) times")
            }
        }
        let verify = try await gw.cli(["audit", "verify"])
        #expect(verify.status == 0, "\(verify)")
    }

    @Test("SIGTERM under load: new work gets 503, nothing else fails, every run ends after the restart")
    func drainUnderLoad() async throws {
        let gw = try await TestGateway.started(workflows: TestWorkflows.all)
        defer { gw.cleanupLater() }
        var ids: [String] = []
        for _ in 0..<12 { ids.append(try await gw.run("slow", ["seconds": "0.5"], sync: false)["id"]!.stringValue!) }
        // Much longer than the drain (5 s): stopped where it is, resumed after the restart.
        let long = try await gw.run("slow", ["seconds": "12"], sync: false)["id"]!.stringValue!
        for _ in 0..<1500 {
            let steps = try await gw.get("/runs/\(long)").json?["steps"].list ?? []
            if steps.contains(where: { $0["path"] == "nap" && $0["status"] == "running" }) { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        let pid = gw.process!.processIdentifier
        let client = gw.client!
        // Clients keep submitting while the gateway drains.
        let load = Task { () -> [Int] in
            var statuses: [Int] = []
            for i in 0..<400 {
                guard let r = try? await client.post("/runs", json: ["workflow": "hello", "input": ["name": .string("l\(i)")]]) else { break }
                statuses.append(r.status)
                if r.status == 202 { continue }
                try? await Task.sleep(for: .milliseconds(5))
            }
            return statuses
        }
        try await Task.sleep(for: .milliseconds(100))
        kill(pid, SIGTERM)
        #expect(await gw.stop() == 0)
        let statuses = await load.value
        #expect(!statuses.contains { $0 >= 500 && $0 != 503 }, "\(Set(statuses))")
        try await gw.start()
        let all = try await gw.get("/runs?limit=1000").json?["runs"].list ?? []
        for run in all {
            let id = run["id"]!.stringValue!
            let done = try await gw.waitForStatus(id, ["succeeded", "failed", "cancelled"], timeout: .seconds(120))
            #expect(done["status"] == "succeeded", "\(done)")
        }
        #expect(Set(ids).isSubset(of: Set(all.compactMap { $0["id"]?.stringValue })))
        let resumed = try await gw.get("/runs/\(long)").json
        let longEvents = try await gw.get("/runs/\(long)/events", headers: [("Accept", "application/json")]).json?["events"].list ?? []
        #expect(resumed?["segments"] == 2, "\(longEvents.map { "\($0["type"]?.stringValue ?? "") \($0["step"]?.stringValue ?? "") \($0["at"]?.stringValue ?? "")" })\n\(gw.logText.suffix(3000))")
        let interrupted = try await gw.get("/audit?action=run.interrupted&run=\(long)").json?["entries"].list ?? []
        #expect(interrupted.count == 1)
    }
}
