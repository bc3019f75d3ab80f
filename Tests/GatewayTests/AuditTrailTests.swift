import Foundation
import SkelmClient
import Testing
import Workflow

#if canImport(Glibc)
import Glibc
#endif

@Suite("The audit trail of a real gateway", .serialized)
final class AuditTrailTests {
    let gw: TestGateway

    init() async throws {
        gw = try await TestGateway.started(workflows: TestWorkflows.all.merging([
            // A step that lasts: a time inside its job is easy to name.
            "nap.workflow.yaml": """
                id: nap
                steps:
                  - id: nap
                    exec: { argv: [sh, -c, "sleep 0.5; echo '{}'"] }
                """,
        ]) { a, _ in a })
    }

    deinit { gw.cleanupLater() }

    @Test("a run is audited from creation to its end, and the chain verifies over HTTP")
    func runAudited() async throws {
        let run = try await gw.run("hello", ["name": "audit"])
        let id = run["id"]!.stringValue!
        let entries = try await gw.get("/audit?run=\(id)").json?["entries"].list ?? []
        #expect(entries.compactMap { $0["action"]?.stringValue }.reversed() == ["run.created", "run.started", "run.finished"])
        #expect(entries.first?["details"]?["status"] == "succeeded")
        let all = try await gw.get("/audit?limit=1000").json?["entries"].list.compactMap { $0["action"]?.stringValue } ?? []
        #expect(all.contains("gateway.started"))
        #expect(all.contains("workflow.registered"))
        #expect(all.contains("workflow.invalid"))
        #expect(all.contains("worker.spawned"))
        let verify = try await gw.get("/audit/verify")
        #expect(verify.json?["ok"] == true, "\(verify.errorMessage)")
        #expect(verify.json?["segments"].list.last?["file"] == "audit.jsonl", "the live log is the last file of the chain")
    }

    @Test("a step that trips seccomp fails as SandboxViolation and is audited as sandbox.violation")
    func violationAudited() async throws {
        let run = try await gw.run("escape")
        #expect(run["status"] == "failed")
        #expect(run["error"]?["code"] == "SandboxViolation")
        let entries = try await gw.get("/audit?action=sandbox.violation&run=\(run["id"]!.stringValue!)").json?["entries"].list ?? []
        #expect(entries.count == 1)
        #expect(entries.first?["details"]?["step"] == "unshare")
    }

    @Test("a kill record written to /dev/kmsg from user space is not audited; the kernel's own record of a real kill is, against its run")
    func forgedKernelRecord() async throws {
        // Root only: the kernel's log and a uid per worker.
        guard geteuid() == 0, let kmsg = FileHandle(forWritingAtPath: "/dev/kmsg") else { return }
        defer { try? kmsg.close() }
        let nap = try await gw.run("nap")
        #expect(nap["status"] == "succeeded", "\(nap)")
        let napId = try #require(nap["id"]?.stringValue)
        // The uid of the worker that ran it (the only exit with a job: spares have not exited).
        let exited = try await gw.auditEntries("action=worker.exited&limit=1000") { $0.contains { $0["details"]?["job"] != nil } }
            .first { $0["details"]?["job"] != nil }
        let pid = try #require(exited?["details"]?["pid"]?.stringValue)
        let spawned = try await gw.get("/audit?action=worker.spawned&limit=1000").json?["entries"].list ?? []
        let uid = try #require(spawned.first { $0["details"]?["pid"]?.stringValue == pid }?["details"]?["uid"]?.stringValue)
        // A forged record, word for word what the kernel prints, stamped while the
        // step slept: user space cannot give it the kernel's facility. (Each write
        // ends with a newline: without one the kernel holds the line back.)
        let stepStart = try #require(nap["steps"].list.first?["startedAt"]?.stringValue.flatMap {
            try? Date($0, strategy: Date.ISO8601FormatStyle(includingFractionalSeconds: true))
        })
        let forged = "audit: type=1326 audit(\(String(format: "%.3f", (stepStart + 0.1).timeIntervalSince1970)):424201): auid=4294967295 "
            + "uid=\(uid) gid=\(uid) ses=4294967295 pid=424201 comm=\"python3\" exe=\"/usr/bin/python3\" sig=31 arch=c000003e "
            + "syscall=272 compat=0 ip=0x0 code=0x80000000\n"
        try kmsg.write(contentsOf: Data(forged.utf8))
        // Then a real kill, read after the forged line: once it is audited, the forged one has been read too.
        let escape = try await gw.run("escape")
        let escapeId = try #require(escape["id"]?.stringValue)
        let real = try await gw.auditEntries("run=\(escapeId)&action=sandbox.seccomp_kill")
        // The kernel rate-limits its audit lines; under the whole suite it may drop this one, and says so.
        if real.isEmpty, ExecutionBoundaryTests.kernelSuppressedAuditLines() { return }
        #expect(real.first?["details"]?["workflow"] == "escape", "\(real)")
        #expect(real.first?["details"]?["reportedBy"] == "kernel")
        let all = try await gw.get("/audit?action=sandbox.seccomp_kill&limit=100").json?["entries"].list ?? []
        #expect(!all.contains { $0["details"]?["pid"] == "424201" }, "a forged line was audited as the kernel's: \(all)")
        #expect(try await gw.get("/audit?run=\(napId)&action=sandbox.seccomp_kill").json?["entries"].list.isEmpty == true)
    }

    @Test("export as CSV and JSONL; the JSONL verifies with an independent Python script")
    func exportAndIndependentVerify() async throws {
        _ = try await gw.run("hello", ["name": "csv"])
        let csv = try await gw.get("/v1/audit/export?format=csv")
        #expect(csv.status == 200)
        #expect(String(decoding: csv.body, as: UTF8.self).hasPrefix("seq,timestamp,actor,action,runId,details,prevHash,entryHash\n1,"))
        let jsonl = try await gw.get("/v1/audit/export?format=jsonl")
        let lines = String(decoding: jsonl.body, as: UTF8.self).split(separator: "\n")
        #expect(lines.first.flatMap { JSONValue.parse(String($0)) }?["seq"] == 1)
        #expect(try await gw.get("/v1/audit/export?format=xml").status == 400)
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../scripts/audit-verify.py").standardized.path
        let r = try await runCommand(["python3", script, gw.stateDir])
        #expect(r.status == 0, "\(r.out)")
        #expect(r.out.hasPrefix("ok:"))
    }

    @Test("after a stop, skelm audit verify checks the state dir alone, and names an edit and a truncation")
    func verifyStoppedGateway() async throws {
        _ = try await gw.run("hello", ["name": "last"])
        #expect(await gw.stop() == 0)
        let ok = try await gw.cli(["audit", "verify"])
        #expect(ok.status == 0, "\(ok.stdout) \(ok.stderr)")
        #expect(ok.stdout.contains("1 signed checkpoints") || ok.stdout.contains("signed checkpoints"))
        let path = gw.stateDir + "/audit.jsonl"
        let original = try String(contentsOfFile: path, encoding: .utf8)
        var lines = original.split(separator: "\n").map(String.init)
        lines[2] = lines[2].replacingOccurrences(of: "\"actor\":\"gateway\"", with: "\"actor\":\"mallory\"")
        try (lines.joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        let edited = try await gw.cli(["audit", "verify"])
        #expect(edited.status == 1)
        #expect(edited.stdout.contains("bad hash at seq 3"))
        let truncated = original.split(separator: "\n").dropLast(10).joined(separator: "\n") + "\n"
        try truncated.write(toFile: path, atomically: true, encoding: .utf8)
        let cut = try await gw.cli(["audit", "verify", "--json"])
        #expect(cut.status == 1)
        #expect(JSONValue.parse(cut.stdout)?["firstBreak"]?["kind"] == "truncated")
        try original.write(toFile: path, atomically: true, encoding: .utf8)
        let query = try await gw.cli(["audit", "query", "--action", "run.*", "--limit", "3"])
        #expect(query.status == 0)
        #expect(query.stdout.contains("run.finished"))
        try await gw.start()
    }

    @Test("a reload audits the workflows it registers; a broken config is audited as config.reload_failed and the old one kept")
    func reload() async throws {
        let config = try String(contentsOfFile: gw.configPath, encoding: .utf8)
        // A comment changes no key: the reload registers the new workflow and audits no config change.
        try (config + "# edited\n").write(toFile: gw.configPath, atomically: true, encoding: .utf8)
        try "id: added\nsteps: [{ id: a, run: echo added }]\n".write(toFile: gw.dir + "/workflows/added.workflow.yaml", atomically: true, encoding: .utf8)
        let r = try await gw.cli(["gateway", "reload"])
        #expect(r.status == 0, "\(r.stderr)")
        var registered = false
        for _ in 0..<200 where !registered {
            let entries = try await gw.get("/audit?action=workflow.registered&limit=100").json?["entries"].list ?? []
            registered = entries.contains { $0["details"]?["workflow"] == "added" }
            if !registered { try await Task.sleep(for: .milliseconds(20)) }
        }
        #expect(registered)
        #expect(try await gw.run("added")["output"] == "added")

        try "server: [broken\n".write(toFile: gw.configPath, atomically: true, encoding: .utf8)
        kill(gw.process!.processIdentifier, SIGHUP)
        var rejected = false
        for _ in 0..<200 where !rejected {
            rejected = try await gw.get("/audit?action=config.*").json?["entries"].list
                .contains { $0["action"] == "config.reload_failed" } == true
            if !rejected { try await Task.sleep(for: .milliseconds(20)) }
        }
        #expect(rejected)
        #expect(try await gw.run("hello", ["name": "still"])["status"] == "succeeded")
        try config.write(toFile: gw.configPath, atomically: true, encoding: .utf8)
    }
}
