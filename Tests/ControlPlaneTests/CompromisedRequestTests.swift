@testable import ControlPlane
import Foundation
import Testing
import Wire
import Workflow

/// A compromised worker and the steps that wait or make requests: it cannot
/// run past an approval at any depth, nor have the control plane make a
/// request (with whatever credential is bound to the host) for a step that is
/// not a running `http` or `infer` step of its segment.
@Suite("A compromised worker cannot get past a park or borrow the control plane's requests")
struct CompromisedRequestTests {
    static let workflow = """
        id: gated
        steps:
          - id: outer
            parallel:
              - id: lane
                forEach:
                  items: [1]
                  steps:
                    - id: ok
                      approval: { message: "go?" }
                    - id: call
                      http: { url: "https://example.com/" }
              - id: other
                run: echo other
        """

    static let opening = """
        emit("step.started", "outer", attempt=1, kind="parallel")
        emit("step.started", "outer/lane", attempt=1, kind="forEach")
        emit("step.started", "outer/lane[0]/ok", attempt=1, kind="approval")
        emit("step.parked", "outer/lane[0]/ok", "go?")
        """

    func run(_ worker: String) async throws -> (RunRecord, [RunEvent], [AuditEntry]) {
        let h = try await RunHarness.start(worker: Self.opening + "\n" + worker, workflows: ["gated.workflow.yaml": Self.workflow])
        defer { Task { await h.cleanup() } }
        let id = try await h.run("gated")
        return (try await h.record(id), try await h.store.events(runId: id), h.entries().filter { $0.runId == id })
    }

    @Test("the step after a nested approval cannot start before the decision; nothing of the claim is kept")
    func pastTheApproval() async throws {
        let (run, events, audit) = try await run("""
            emit("step.started", "outer/lane[0]/call", attempt=1, kind="http")
            emit("step.finished", "outer/lane[0]/call", attempt=1, output={"status": 200})
            linger()
            """)
        #expect(run.status == .failed)
        #expect(run.error?.failureCode == .workerViolation)
        #expect(run.error?.message.contains("cannot start before outer/lane[0]/ok") == true, "\(run.error?.message ?? "")")
        #expect(!events.contains { $0.step == "outer/lane[0]/call" })
        let violation = audit.first { $0.action == "worker.violation" }
        #expect(violation?.details["claim"] == "step.started outer/lane[0]/call")
        // The run failed at the refusal: it never parked, so no approval is left to decide.
        #expect(!events.contains { $0.type == "run.waiting" })
    }

    @Test("http.fetch for a running step that is not an http step is refused, and nothing is fetched")
    func notAnHTTPStep() async throws {
        let (run, _, _) = try await run("""
            emit("step.started", "outer/other", attempt=1, kind="exec")
            r = call("http.fetch", {"jobId": JOB, "step": "outer/other", "url": "https://example.com/", "headers": []})
            fail("outer/other", "HTTPFailed", "fetch answer: %s" % json.dumps(r.get("error", r.get("result"))))
            """)
        #expect(run.error?.message.contains("fetch answer") == true, "\(run.error?.message ?? "")")
        #expect(run.error?.message.contains("outer/other is not an http step") == true, "\(run.error?.message ?? "")")
    }

    static let direct = """
        id: direct
        steps:
          - id: call
            http: { url: "https://example.com/api/${{ input.what }}", headers: { Accept: application/json } }
        """

    /// What the control plane answered a worker's `http.fetch` calls for the running step `call`.
    func answers(_ calls: String) async throws -> String {
        let h = try await RunHarness.start(worker: """
            emit("step.started", "call", attempt=1, kind="http")
            answers = []
            \(calls)
            fail("call", "HTTPFailed", "answers: %s" % json.dumps(answers))
            """, workflows: ["direct.workflow.yaml": Self.direct])
        defer { Task { await h.cleanup() } }
        let run = try await h.record(try await h.run("direct", input: ["what": "items"]))
        return run.error?.message ?? ""
    }

    @Test("for a running http step, http.fetch may not leave the step's URL, add headers the step does not declare, or come twice in one attempt")
    func outsideTheStep() async throws {
        let path = try await answers("""
            answers.append(call("http.fetch", {"jobId": JOB, "step": "call", "url": "https://example.com/admin/delete", "headers": []}).get("error"))
            """)
        #expect(path.contains("does not fit the step's url"), "\(path)")
        let header = try await answers("""
            answers.append(call("http.fetch", {"jobId": JOB, "step": "call", "url": "https://example.com/api/items",
                                               "headers": [{"name": "X-HTTP-Method-Override", "value": "DELETE"}]}).get("error"))
            """)
        #expect(header.contains("X-HTTP-Method-Override is not one the step declares"), "\(header)")
        let twice = try await answers("""
            for _ in range(2):
                answers.append(call("http.fetch", {"jobId": JOB, "step": "call", "url": "https://example.com/api/items", "headers": []}).get("error"))
            """)
        #expect(twice.contains("already made its request in this attempt"), "\(twice)")
    }

    @Test("http.fetch and infer.complete for a step that is not running, or another job's, are refused")
    func notRunning() async throws {
        let (run, _, _) = try await run("""
            a = call("http.fetch", {"jobId": JOB, "step": "outer/lane[0]/call", "url": "https://example.com/", "headers": []})
            b = call("infer.complete", {"jobId": "someone-else", "step": "outer/lane[0]/call", "messages": []})
            emit("step.started", "outer/other", attempt=1, kind="exec")
            fail("outer/other", "HTTPFailed", "answers: %s | %s" % (json.dumps(a.get("error")), json.dumps(b.get("error"))))
            """)
        let message = run.error?.message ?? ""
        #expect(message.contains("outer/lane[0]/call is not running in this worker"), "\(message)")
        #expect(message.contains("not this worker's job"), "\(message)")
    }
}

/// The order the interpreter keeps, held against a worker that does not.
@Suite("A compromised worker cannot reorder what runs")
struct CompromisedOrderTests {
    static let workflows = [
        "rounds.workflow.yaml": """
            id: rounds
            steps:
              - id: rounds
                loop:
                  max: 3
                  steps:
                    - { id: gate, approval: { message: "next round?" } }
                    - { id: act, run: echo act }
            """,
        "each.workflow.yaml": """
            id: each
            steps:
              - id: each
                forEach: { items: [1, 2, 3], concurrency: 1, steps: [{ id: work, run: echo work }] }
            """,
        "both.workflow.yaml": """
            id: both
            steps:
              - id: both
                parallel:
                  - { id: left, run: echo left }
                  - { id: right, run: echo right }
            """,
    ]

    func violation(_ workflow: String, _ worker: String) async throws -> String {
        let h = try await RunHarness.start(worker: worker, workflows: Self.workflows)
        defer { Task { await h.cleanup() } }
        let run = try await h.record(try await h.run(workflow))
        #expect(run.error?.failureCode == .workerViolation, "\(run.status) \(run.error?.message ?? "")")
        return run.error?.message ?? ""
    }

    @Test("a loop's next iteration cannot start while the one before waits for its approval")
    func loopOrder() async throws {
        let message = try await violation("rounds", """
            emit("step.started", "rounds", attempt=1, kind="loop")
            emit("step.started", "rounds[0]/gate", attempt=1, kind="approval")
            emit("step.parked", "rounds[0]/gate", "next round?")
            emit("step.started", "rounds[1]/gate", attempt=1, kind="approval")
            linger()
            """)
        #expect(message.contains("iteration 0 of loop rounds has not ended"), "\(message)")
    }

    @Test("a forEach cannot run more iterations at once than its concurrency")
    func concurrency() async throws {
        let message = try await violation("each", """
            emit("step.started", "each", attempt=1, kind="forEach")
            emit("step.started", "each[0]/work", attempt=1, kind="exec")
            emit("step.started", "each[1]/work", attempt=1, kind="exec")
            linger()
            """)
        #expect(message.contains("1 iterations of each run already (concurrency 1)"), "\(message)")
    }

    @Test("a step without an if cannot be skipped")
    func skip() async throws {
        let message = try await violation("both", """
            emit("step.skipped", "both", "condition is false")
            linger()
            """)
        #expect(message.contains("both has no condition; it cannot be skipped"), "\(message)")
    }

    @Test("a parallel cannot succeed before every branch ran")
    func container() async throws {
        let message = try await violation("both", """
            emit("step.started", "both", attempt=1, kind="parallel")
            ran("both/left", "left")
            emit("step.finished", "both", attempt=1, output={"left": "left"})
            linger()
            """)
        #expect(message.contains("both cannot succeed: both/right, inside it, did not run to its end"), "\(message)")
    }

    static let offered = """
        id: offered
        steps:
          - id: ask
            agent: { agent: helper, mcpServers: [time], prompt: hi }
          - id: other
            run: echo other
        """

    /// What the control plane answered a worker's `mcp.resident` calls while the agent step `ask` runs.
    func residentAnswers(_ calls: String) async throws -> (String, [AuditEntry]) {
        let time = PeerLaunch(id: "time", program: "/usr/bin/true")
        var resident = time
        resident.resident = true
        let peers = PeerRegistry(
            agents: ["helper": .init(config: .init(id: "helper", command: "/usr/bin/true"), launch: PeerLaunch(id: "helper", program: "/usr/bin/true"),
                                     ceiling: nil)],
            mcpServers: ["time": .init(config: .init(id: "time", command: "/usr/bin/true"), launch: resident, ceiling: nil)])
        let h = try await RunHarness.start(worker: """
            emit("step.started", "ask", attempt=1, kind="agent")
            answers = []
            \(calls)
            fail("ask", "AgentFailed", "answers: %s" % json.dumps(answers))
            """, workflows: ["offered.workflow.yaml": Self.offered],
            defaults: PermissionSet(allowedExecutables: ["echo"], allowedMcpServers: ["time"], allowedTools: ["time/get_current_time"],
                                    allowedAgents: ["helper"]),
            peers: peers)
        defer { Task { await h.cleanup() } }
        let id = try await h.run("offered")
        return (try await h.record(id).error?.message ?? "", h.entries().filter { $0.runId == id })
    }

    @Test("mcp.resident for a tool the step may not call, for a step that offers no such server, or for a step that is not running is refused; the policy's refusal is audited as the gateway's")
    func residentMCP() async throws {
        let (message, audit) = try await residentAnswers("""
            for step, server, tool in [("ask", "time", "convert_time"), ("other", "time", "get_current_time"), ("ask", "git", "git_status")]:
                r = call("mcp.resident", {"jobId": JOB, "step": step, "server": server, "operation": {"call": {"tool": tool, "arguments": {}}}, "timeoutMs": 1000})
                answers.append(r.get("error", {}).get("message", "answered: %s" % json.dumps(r.get("result"))))
            """)
        #expect(message.contains("PermissionDenied: allowedTools does not allow time/convert_time"), "\(message)")
        #expect(message.contains("step other does not call time that way"), "\(message)")
        #expect(message.contains("step ask does not call git that way"), "\(message)")
        #expect(!message.contains("answered:"), "\(message)")
        let denied = audit.filter { $0.action == "permission.denied" }
        #expect(denied.contains { $0.details["value"] == "time/convert_time" && $0.details["decidedBy"] == "gateway" && $0.details["method"] == "mcp.resident" },
                "\(denied.map(\.details))")
    }
}
