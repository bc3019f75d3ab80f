import Foundation
import SkelmClient
import Testing
import Workflow

@Suite("Config: show, patch, hot reload")
struct ConfigReloadTests {
    @Test("PATCH changes a hot key at once and audits the diff; a key outside the whitelist or a bad value is 400 naming it and changes nothing")
    func patch() async throws {
        let gw = try await TestGateway.started(workflows: TestWorkflows.all)
        defer { gw.cleanupLater() }
        let shown = try await gw.get("/v1/config")
        #expect(shown.json?["config"]?["server.maxConcurrentRuns"] == "4")

        let ok = try await gw.client.send(.PATCH, "/v1/config", body: Data(#"{"server": {"maxConcurrentRuns": 2}}"#.utf8),
                                          headers: [("Content-Type", "application/json")])
        #expect(ok.status == 200, "\(ok.errorMessage)")
        #expect(ok.json?["applied"].list.first?["key"] == "server.maxConcurrentRuns")
        #expect(try await gw.get("/v1/config").json?["config"]?["server.maxConcurrentRuns"] == "2")
        let status = try await gw.get("/gateway/status").json
        #expect(status?["runs"]?["maxConcurrent"] == 2)

        for (body, key) in [(#"{"server.port": 1}"#, "server.port"), (#"{"defaults": {"permissions": {"allowedExecutables": ["bash"]}}}"#, "defaults.permissions.allowedExecutables"),
                            (#"{"server.maxConcurrentRuns": 0}"#, "server.maxConcurrentRuns"), (#"{"server.maxConcurrentRuns": "many"}"#, "server.maxConcurrentRuns")] {
            let r = try await gw.client.send(.PATCH, "/v1/config", body: Data(body.utf8), headers: [("Content-Type", "application/json")])
            #expect(r.status == 400, "\(body)")
            #expect(r.errorMessage.contains(key), "\(r.errorMessage)")
        }
        #expect(try await gw.get("/v1/config").json?["config"]?["server.maxConcurrentRuns"] == "2")

        // The pool's size is live too: more spare workers start at once.
        let pool = try await gw.client.send(.PATCH, "/v1/config", body: Data(#"{"workers.minSpare": 3, "workers.max": 6}"#.utf8),
                                            headers: [("Content-Type", "application/json")])
        #expect(pool.status == 200, "\(pool.errorMessage)")
        var idle = 0
        for _ in 0..<200 {
            if case let .number(n)? = try await gw.get("/v1/workers").json?["idle"] { idle = Int(n) }
            if idle >= 3 { break }
            try await Task.sleep(for: .milliseconds(25))
        }
        #expect(idle >= 3)
        #expect(try await gw.get("/gateway/status").json?["workers"]?["max"] == 6)
        #expect(try await gw.client.send(.PATCH, "/v1/config", body: Data(#"{"workers.minSpare": 9}"#.utf8),
                                         headers: [("Content-Type", "application/json")]).status == 400)

        let set = try await gw.cli(["config", "set", "server.runTimeoutSeconds=120"])
        #expect(set.status == 0, "\(set)")
        let refused = try await gw.cli(["config", "set", "server.host=0.0.0.0"])
        #expect(refused.status == 1)
        #expect(refused.stderr.contains("server.host"))

        let audit = try await gw.get("/audit?action=config.patched").json?["entries"].list ?? []
        #expect(audit.count == 3)
        #expect(audit.last?["details"]?["changes"]?.stringValue?.contains("maxConcurrentRuns") == true)
        #expect(audit.last?["actor"]?.stringValue?.hasPrefix("unix:") == true)
    }

    @Test("an edited config file is applied by itself; a broken edit is kept out and audited; keys that need a restart are named")
    func hotReload() async throws {
        let gw = try await TestGateway.started(workflows: TestWorkflows.all)
        defer { gw.cleanupLater() }
        let original = try String(contentsOfFile: gw.configPath, encoding: .utf8)

        // A broken edit: the running config stays, the failure is audited.
        try original.replacingOccurrences(of: "maxConcurrentRuns: 4", with: "maxConcurrentRuns: nope")
            .write(toFile: gw.configPath, atomically: true, encoding: .utf8)
        let rejected = try await gw.post("/gateway/reload", [:])
        #expect(rejected.status == 422)
        #expect(rejected.json?["outcome"] == "rejected")
        #expect(rejected.json?["error"]?.stringValue?.contains("server.maxConcurrentRuns") == true)
        #expect(try await gw.get("/v1/config").json?["config"]?["server.maxConcurrentRuns"] == "4")
        let failures = try await gw.get("/audit?action=config.reload_failed").json?["entries"].list ?? []
        #expect(!failures.isEmpty)
        #expect(try await gw.run("hello", ["name": "still"])["status"] == "succeeded")

        // A good edit, noticed without being asked (inotify): live keys apply, the port waits for a restart.
        try original.replacingOccurrences(of: "maxConcurrentRuns: 4", with: "maxConcurrentRuns: 3")
            .replacingOccurrences(of: "port: 0", with: "port: 1")
            .write(toFile: gw.configPath, atomically: true, encoding: .utf8)
        var applied = false
        for _ in 0..<100 {
            if try await gw.get("/v1/config").json?["config"]?["server.maxConcurrentRuns"] == "3" { applied = true; break }
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(applied)
        let reloads = try await gw.get("/audit?action=config.reloaded").json?["entries"].list ?? []
        #expect(reloads.first?["details"]?["applied"] == "server.maxConcurrentRuns")
        #expect(reloads.first?["details"]?["restartRequired"] == "server.port")
        #expect(try await gw.get("/v1/config").json?["config"]?["server.port"] == "0")

        // A new workflow file is picked up the same way.
        try "id: added\nsteps:\n  - id: s\n    run: echo added\n".write(toFile: gw.dir + "/workflows/added.workflow.yaml", atomically: true, encoding: .utf8)
        var found = false
        for _ in 0..<100 {
            if try await gw.post("/runs", ["workflow": "added", "mode": "sync"]).json?["status"] == "succeeded" { found = true; break }
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(found)
    }

    @Test("SIGHUP reloads; `skelm gateway reload` reports what changed")
    func signalReload() async throws {
        let gw = try await TestGateway.started(workflows: TestWorkflows.all, config: TestGateway.defaultConfig.replacingOccurrences(of: "port: 0,", with: "port: 0, watchFiles: false,"))
        defer { gw.cleanupLater() }
        let original = try String(contentsOfFile: gw.configPath, encoding: .utf8)
        try original.replacingOccurrences(of: "timeoutSeconds: 20", with: "timeoutSeconds: 25").write(toFile: gw.configPath, atomically: true, encoding: .utf8)
        try await Task.sleep(for: .milliseconds(600))
        // watchFiles is off: nothing changed yet.
        #expect(try await gw.get("/v1/config").json?["config"]?["workers.limits.timeoutSeconds"] == "20")
        kill(gw.process!.processIdentifier, SIGHUP)
        var applied = false
        for _ in 0..<100 {
            if try await gw.get("/v1/config").json?["config"]?["workers.limits.timeoutSeconds"] == "25" { applied = true; break }
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(applied)
        try original.replacingOccurrences(of: "timeoutSeconds: 20", with: "timeoutSeconds: 30").write(toFile: gw.configPath, atomically: true, encoding: .utf8)
        let cli = try await gw.cli(["gateway", "reload"])
        #expect(cli.status == 0, "\(cli)")
        #expect(cli.stdout.contains("workers.limits.timeoutSeconds: 25 -> 30"), "\(cli.stdout)")
    }

    @Test("a ceiling that lets steps write the config's or a workflow's directory is refused, at start and on reload")
    func controlFilesStayOutOfReach() async throws {
        let gw = try TestGateway(workflows: TestWorkflows.all)
        defer { gw.cleanupLater() }
        let base = try String(contentsOfFile: gw.configPath, encoding: .utf8)
        func granting(_ path: String) -> String {
            base.replacingOccurrences(of: "allowedExecutables: [echo, sh, python3, sleep, wc]",
                                      with: "allowedExecutables: [echo, sh, python3, sleep, wc], fsWrite: [\(path)]")
        }
        try granting(gw.dir + "/workflows/team").write(toFile: gw.configPath, atomically: true, encoding: .utf8)
        let refused = try await gw.cli(["gateway", "start"])
        #expect(refused.status == 2, "\(refused)")
        #expect(refused.stderr.contains("defaults.permissions.fsWrite"), "\(refused.stderr)")
        #expect(refused.stderr.contains("workflow dir"))
        // A resident peer's own ceiling is held to the same rule.
        try (base + "\nmcpServers:\n  - { id: t, command: /bin/sh, lifecycle: resident, permissions: { fsWrite: [\(gw.dir)/workflows] } }\n")
            .write(toFile: gw.configPath, atomically: true, encoding: .utf8)
        let peer = try await gw.cli(["gateway", "start"])
        #expect(peer.status == 2, "\(peer)")
        #expect(peer.stderr.contains("mcpServers[0].permissions.fsWrite"), "\(peer.stderr)")

        try base.write(toFile: gw.configPath, atomically: true, encoding: .utf8)
        try await gw.start()
        try granting(gw.dir).write(toFile: gw.configPath, atomically: true, encoding: .utf8)
        let reload = try await gw.post("/gateway/reload", [:])
        #expect(reload.status == 422)
        #expect(reload.json?["error"]?.stringValue?.contains("would let steps write") == true, "\(reload.json.map(\.jsonText) ?? "")")
        #expect(try await gw.run("hello", ["name": "still"])["status"] == "succeeded")
    }
}
