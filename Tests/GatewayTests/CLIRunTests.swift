import Foundation
import Testing
import Workflow

@Suite("skelm run, runs, workers, workflows", .serialized)
final class CLIRunTests {
    let gw: TestGateway

    init() async throws {
        gw = try await TestGateway.started(workflows: TestWorkflows.all)
    }

    deinit { gw.cleanupLater() }

    @Test("skelm run prints each step as it completes, then the output; exit 0")
    func runPrintsSteps() async throws {
        let r = try await gw.cli(["run", "fanout", "--input", #"{"numbers":[2,3]}"#])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("✓ both/squares[0]/sq"))
        #expect(r.stdout.contains("✓ total"))
        let json = r.stdout.split(separator: "\n").drop { !$0.hasPrefix("{") }.joined(separator: "\n")
        #expect(JSONValue.parse(json)?["total"] == 13)
    }

    @Test("a failed run exits 1 and names the step and cause; --json prints the run")
    func runFails() async throws {
        let r = try await gw.cli(["run", "fails"])
        #expect(r.status == 1)
        #expect(r.stderr.contains("boom"))
        #expect(r.stderr.contains("ExecFailed"))
        let j = try await gw.cli(["run", "fails", "--json"])
        #expect(j.status == 1)
        #expect(JSONValue.parse(j.stdout)?["status"] == "failed")
    }

    @Test("a rejected request exits 3 with the gateway's reason")
    func rejected() async throws {
        let r = try await gw.cli(["run", "hello", "--input", "{}"])
        #expect(r.status == 3)
        #expect(r.stderr.contains("input.name: is required"))
        let bad = try await gw.cli(["run", "hello", "--input", "{nope"])
        #expect(bad.status != 0)
        #expect(bad.stderr.contains("not valid JSON"))
    }

    @Test("runs list, show and cancel")
    func runs() async throws {
        let started = try await gw.cli(["run", "slow", "--input", #"{"seconds":"20"}"#, "--detach"])
        #expect(started.status == 0)
        let id = started.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(id.hasPrefix("run_"))
        let list = try await gw.cli(["runs", "list"])
        #expect(list.stdout.contains(id))
        let cancel = try await gw.cli(["runs", "cancel", id])
        #expect(cancel.status == 0)
        #expect(cancel.stdout.contains("cancelled"))
        let show = try await gw.cli(["runs", "show", id, "--events"])
        #expect(show.stdout.contains("status    cancelled"))
        #expect(show.stdout.contains("run.cancelled"))
        let missing = try await gw.cli(["runs", "show", "run_nope"])
        #expect(missing.status != 0)
        #expect(missing.stderr.contains("404"))
    }

    @Test("workers list shows pid, state and sandbox layers; workflows list flags the broken file")
    func workersAndWorkflows() async throws {
        let w = try await gw.cli(["workers", "list"])
        #expect(w.status == 0)
        #expect(w.stdout.contains("seccomp"))
        #expect(w.stdout.contains("landlock"))
        #expect(w.stdout.contains("idle"))
        let f = try await gw.cli(["workflows", "list"])
        #expect(f.stdout.contains("broken"))
        #expect(f.stdout.contains("NO"))
        #expect(f.stdout.contains("duplicate step id"))
    }

    @Test("workflows validate checks files without a gateway and exits 1 on a bad one")
    func validate() async throws {
        let ok = try await gw.cli(["workflows", "validate", gw.dir + "/workflows/hello.workflow.yaml"], withConfig: false)
        #expect(ok.status == 0)
        let bad = try await gw.cli(["workflows", "validate", gw.dir + "/workflows/broken.workflow.yaml"], withConfig: false)
        #expect(bad.status == 1)
        #expect(bad.stdout.contains("broken.workflow.yaml:"))
    }

    @Test("the CLI finds the gateway through SKELM_GATEWAY_URL too, and says so when none runs")
    func discovery() async throws {
        let status = try await gw.cli(["gateway", "status", "--gateway", "http://127.0.0.1:\(portOf(gw))"])
        #expect(status.status == 0)
        #expect(status.stdout.contains("state     running"))
        #expect(status.stdout.contains("url       http://127.0.0.1"))
        let nowhere = try await gw.cli(["gateway", "status", "--gateway", "http://127.0.0.1:1"])
        #expect(nowhere.status == 3)
        #expect(nowhere.stderr.contains("cannot reach the gateway"))
    }

    func portOf(_ gw: TestGateway) -> Int {
        if case let .tcp(_, port) = gw.tcp.target { return port }
        return 0
    }
}
