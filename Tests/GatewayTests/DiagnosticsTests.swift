import Foundation
import SkelmClient
import Testing
import Workflow

#if canImport(Glibc)
import Glibc
#endif

/// Diagnostics next to a live gateway, and a gateway in a directory its workers cannot enter.
@Suite("Trust boundary: diagnostics and state dirs", .serialized)
struct DiagnosticsTests {
    @Test("doctor and sandbox exec on a live gateway's config leave its state alone")
    func diagnosticsLeaveLiveStateAlone() async throws {
        let gw = try await TestGateway.started(workflows: TestWorkflows.all)
        defer { gw.cleanupLater() }
        let socket = gw.stateDir + "/workspaces/.egress.sock"
        let exec = try await gw.cli(["sandbox", "exec", "--config", gw.configPath, "--", "echo", "hi"], withConfig: false)
        #expect(exec.status == 0 && exec.stdout == "hi\n", "\(exec)")
        let doctor = try await gw.cli(["doctor"])
        #expect(doctor.stdout.contains("seccomp"), "\(doctor)")
        #expect(FileManager.default.fileExists(atPath: socket), "the live gateway's egress socket is still there")
        let run = try await gw.run("hello", ["name": "still here"])
        #expect(run["status"] == "succeeded")
        let verify = try await gw.get("/audit/verify").json
        #expect(verify?["ok"] == true, "the chain has no entries of another writer: \(String(describing: verify))")
        // The diagnostics' own gateway would have written gateway.started/stopped here.
        let started = try await gw.get("/audit?action=gateway.started").json?["entries"].list ?? []
        #expect(started.count == 1, "\(started)")
    }

    @Test("a state dir below a directory worker uids cannot search still runs steps")
    func unsearchableStateDir() async throws {
        guard geteuid() == 0 else { return }
        let gw = try TestGateway(workflows: TestWorkflows.all)
        defer { gw.cleanupLater() }
        chmod(gw.dir, 0o700)   // as a checkout in /root would be
        try await gw.start()
        let run = try await gw.run("hello", ["name": "root's checkout"])
        #expect(run["status"] == "succeeded", "\(run)")
        #expect(run["output"] == "Hello, root's checkout!")
        #expect(gw.logText.contains("/run/skelm/"), "the log says where workspaces went: \(gw.logText)")
    }
}
