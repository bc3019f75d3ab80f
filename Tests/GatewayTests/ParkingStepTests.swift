import Foundation
import SkelmClient
import Testing
import Workflow

#if canImport(Glibc)
import Glibc
#endif

/// `wait` and `invoke` steps, and approvals at any depth: parked runs hold no
/// worker, go on from their checkpoints, and never run a completed step twice.
@Suite("Parking steps: wait, invoke, nested approvals", .serialized)
final class ParkingStepTests {
    static let workflows: [String: String] = [
        "waiter.workflow.yaml": """
            id: waiter
            steps:
              - id: ask
                wait:
                  message: send the size
                  output: { type: object, required: [size], properties: { size: { type: integer, minimum: 1 } } }
              - id: after
                exec: { argv: [sh, -c, 'echo "size $SIZE"'], env: { SIZE: "${{ steps.ask.output.size }}" } }
            """,
        "deep.workflow.yaml": """
            id: deep
            steps:
              - id: fan
                forEach:
                  items: [1, 2, 3]
                  steps:
                    - id: mark
                      exec: { argv: [sh, -c, 'echo "item $N"'], env: { N: "${{ item }}" } }
                    - id: gate
                      approval: { message: "ship item ${{ item }}?" }
              - id: both
                parallel:
                  - id: left
                    wait: { message: "left?" }
                  - id: right
                    run: echo right
            result: { marks: "${{ steps.fan.output }}", left: "${{ steps.left.output }}", right: "${{ steps.right.output }}" }
            """,
        "parent.workflow.yaml": """
            id: parent
            steps:
              - id: call
                invoke: { workflow: child, input: { n: "${{ input.n }}" } }
            result: "${{ steps.call.output }}"
            """,
        "child.workflow.yaml": """
            id: child
            input: { type: object, required: [n], properties: { n: { type: integer } } }
            steps:
              - id: double
                exec: { argv: [sh, -c, 'echo $((N * 2))'], env: { N: "${{ input.n }}" } }
            """,
        "calls-failing.workflow.yaml": """
            id: calls-failing
            steps:
              - id: call
                invoke: broken-child
            """,
        "broken-child.workflow.yaml": """
            id: broken-child
            steps:
              - id: boom
                run: exit 3
            """,
        "calls-waiting.workflow.yaml": """
            id: calls-waiting
            steps:
              - id: call
                invoke: waiting-child
            """,
        "waiting-child.workflow.yaml": """
            id: waiting-child
            steps:
              - id: hold
                wait: {}
            """,
        "expiring-wait.workflow.yaml": """
            id: expiring-wait
            steps:
              - id: hold
                wait: { timeout: 300ms }
            """,
        "defaulted-wait.workflow.yaml": """
            id: defaulted-wait
            steps:
              - id: hold
                wait: { timeout: 300ms, onTimeout: resume, timeoutOutput: { size: 1 }, output: { type: object } }
            result: "${{ steps.hold.output.size }}"
            """,
        "nest.workflow.yaml": """
            id: nest
            steps:
              - id: down
                invoke: nest-2
            """,
        "nest-2.workflow.yaml": """
            id: nest-2
            steps:
              - id: down
                invoke: nest-3
            """,
        "nest-3.workflow.yaml": """
            id: nest-3
            steps:
              - { id: bottom, run: echo bottom }
            """,
        "ping.workflow.yaml": """
            id: ping
            steps:
              - id: call
                invoke: pong
            """,
        "pong.workflow.yaml": """
            id: pong
            steps:
              - id: call
                invoke: ping
            """,
    ]

    let gw: TestGateway

    init() async throws {
        gw = try await TestGateway.started(workflows: Self.workflows,
                                           config: TestGateway.config(server: "{ host: 127.0.0.1, port: 0, maxConcurrentRuns: 4, maxInvokeDepth: 1 }"))
    }

    deinit { gw.cleanupLater() }

    func resume(_ id: String, _ body: JSONValue) async throws -> GatewayClient.Reply {
        try await gw.post("/runs/\(id)/resume", body)
    }

    func events(_ id: String) async throws -> [JSONValue] {
        try await gw.get("/runs/\(id)/events?limit=10000", headers: [("Accept", "application/json")]).json?["events"].list ?? []
    }

    func starts(_ events: [JSONValue], _ step: String) -> Int {
        events.filter { $0["type"] == "step.started" && $0["step"]?.stringValue == step }.count
    }

    @Test("a wait step parks the run; a body that breaks its schema is a 400 naming the path; a valid one resumes it, once")
    func waitAndResume() async throws {
        let run = try await gw.run("waiter", sync: false)
        let id = try #require(run["id"]?.stringValue)
        let waiting = try await gw.waitForStatus(id, ["waiting"])
        #expect(waiting["steps"].list.contains { $0["path"] == "ask" && $0["status"] == "waiting" })
        // This run's job, not any: the suite's other tests share the gateway and its workers.
        let started = try await gw.get("/audit?run=\(id)&action=run.started").json?["entries"].list ?? []
        let job = try #require(started.first?["details"]?["job"]?.stringValue, "\(started)")
        var held = true
        for _ in 0..<500 where held {
            held = try await gw.get("/v1/workers").json?["workers"].list.contains { $0["jobId"]?.stringValue == job } ?? true
            if held { try await Task.sleep(for: .milliseconds(20)) }
        }
        #expect(!held, "a parked run holds no worker")

        let bad = try await resume(id, ["output": ["size": 0]])
        #expect(bad.status == 400)
        #expect(bad.json?["error"]?["code"] == "invalid_input")
        #expect(bad.errorMessage.contains("output.size"), "\(bad.errorMessage)")
        #expect(try await resume(id, ["size": 3]).status == 400, "output is required")
        #expect(try await resume(id, ["output": ["size": 3], "extra": 1]).status == 400)
        #expect(try await resume("run_nope", ["output": ["size": 3]]).status == 404)
        #expect(try await resume(id, ["output": ["size": 3], "step": "after"]).status == 409)

        let cli = try await gw.cli(["runs", "resume", id, "--output", #"{"size": 3}"#])
        #expect(cli.status == 0, "\(cli.stderr)")
        let done = try await gw.waitForStatus(id, ["succeeded", "failed"])
        #expect(done["status"] == "succeeded", "\(done)")
        #expect(done["output"] == "size 3")
        let again = try await resume(id, ["output": ["size": 4]])
        #expect(again.status == 409, "a wait is resolved once")
        #expect(again.json?["error"]?["code"] == "conflict")
        let audited = try await gw.get("/audit?action=wait.resumed").json?["entries"].list ?? []
        #expect(audited.contains { $0["runId"]?.stringValue == id && $0["actor"]?.stringValue?.hasPrefix("unix:") == true })
    }

    @Test("approvals inside a forEach and a wait inside a parallel park at their depth; no completed step runs twice")
    func nested() async throws {
        let run = try await gw.run("deep", sync: false)
        let id = try #require(run["id"]?.stringValue)
        for item in 1...3 {
            _ = try await gw.waitForStatus(id, ["waiting"])
            var approval: JSONValue?
            for _ in 0..<300 {
                approval = try await gw.get("/approvals?run=\(id)").json?["approvals"].list.first
                if approval != nil { break }
                try await Task.sleep(for: .milliseconds(20))
            }
            let a = try #require(approval)
            #expect(a["step"]?.stringValue == "fan[\(item - 1)]/gate")
            #expect(a["message"]?.stringValue == "ship item \(item)?")
            let r = try await gw.post("/approvals/\(a["id"]!.stringValue!)/approve", [:])
            #expect(r.status == 200, "\(r.errorMessage)")
            // The next park is a new approval; wait for this one to be gone from the pending list.
            for _ in 0..<300 {
                let pending = try await gw.get("/approvals?run=\(id)").json?["approvals"].list ?? []
                if !pending.contains(where: { $0["id"] == a["id"] }) { break }
                try await Task.sleep(for: .milliseconds(20))
            }
        }
        let parked = try await gw.waitForStatus(id, ["waiting"])
        #expect(parked["steps"].list.contains { $0["path"] == "both/left" && $0["status"] == "waiting" }, "\(parked)")
        #expect(parked["steps"].list.contains { $0["path"] == "both/right" && $0["status"] == "succeeded" }, "the other branch ran to its end")
        let r = try await resume(id, ["output": "left done"])
        #expect(r.status == 200, "\(r.errorMessage)")
        let done = try await gw.waitForStatus(id, ["succeeded", "failed"])
        #expect(done["status"] == "succeeded", "\(done)")
        #expect(done["output"]?["left"] == "left done")
        #expect(done["output"]?["right"] == "right")
        let all = try await events(id)
        for i in 0..<3 {
            #expect(starts(all, "fan[\(i)]/mark") == 1, "fan[\(i)]/mark ran once")
            #expect(starts(all, "fan[\(i)]/gate") == 1)
        }
        #expect(starts(all, "both/right") == 1)
        #expect(done["segments"] == 5, "one segment per park, and the last")
    }

    @Test("invoke runs a child and takes its output; the link shows both ways")
    func invoke() async throws {
        let done = try await gw.run("parent", ["n": 21])
        #expect(done["status"] == "succeeded", "\(done)")
        #expect(done["output"] == 42)
        let id = try #require(done["id"]?.stringValue)
        let children = try await gw.get("/runs/\(id)").json?["children"].list ?? []
        #expect(children.count == 1)
        let child = try #require(children.first)
        #expect(child["step"] == "call")
        #expect(child["workflow"] == "child")
        #expect(child["status"] == "succeeded")
        let childRun = try #require(try await gw.get("/runs/\(child["id"]!.stringValue!)").json)
        #expect(childRun["parentRunId"]?.stringValue == id)
        #expect(childRun["parentStep"] == "call")
        #expect(childRun["depth"] == 1)
        #expect(childRun["output"] == 42)
    }

    @Test("a failing child fails its parent as ChildFailed; a child's invalid input fails the invoke step")
    func failingChild() async throws {
        let done = try await gw.run("calls-failing")
        #expect(done["status"] == "failed")
        #expect(done["error"]?["code"] == "ChildFailed")
        #expect(done["error"]?["step"] == "call")
        #expect(done["error"]?["message"]?.stringValue?.contains("ExecFailed") == true, "\(done)")
        let bad = try await gw.run("parent", ["n": "not a number"])
        #expect(bad["status"] == "failed")
        #expect(bad["error"]?["code"] == "ChildFailed")
        #expect(bad["error"]?["message"]?.stringValue?.contains("input.n") == true, "\(bad)")
    }

    @Test("cancelling a parent cancels its child")
    func cancelParent() async throws {
        let run = try await gw.run("calls-waiting", sync: false)
        let id = try #require(run["id"]?.stringValue)
        var childId: String?
        for _ in 0..<500 {
            childId = try await gw.get("/runs/\(id)").json?["children"].list.first?["id"]?.stringValue
            if childId != nil { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        let child = try #require(childId)
        _ = try await gw.waitForStatus(child, ["waiting"])
        let r = try await gw.post("/runs/\(id)/cancel", [:])
        #expect(r.json?["status"] == "cancelled")
        let after = try await gw.waitForStatus(child, ["cancelled", "failed", "succeeded"])
        #expect(after["status"] == "cancelled")
        #expect(try await resume(child, ["output": 1]).status == 409, "its wait closed with it")
    }

    @Test("a wait's timeout fails it as WaitExpired, or resumes it with timeoutOutput")
    func waitTimeout() async throws {
        let failed = try await gw.run("expiring-wait", sync: false)
        let f = try await gw.waitForStatus(try #require(failed["id"]?.stringValue), ["succeeded", "failed"], timeout: .seconds(20))
        #expect(f["error"]?["code"] == "WaitExpired", "\(f)")
        #expect(f["error"]?["step"] == "hold")
        let resumed = try await gw.run("defaulted-wait", sync: false)
        let r = try await gw.waitForStatus(try #require(resumed["id"]?.stringValue), ["succeeded", "failed"], timeout: .seconds(20))
        #expect(r["status"] == "succeeded", "\(r)")
        #expect(r["output"] == 1)
    }

    @Test("invokes nest at most server.maxInvokeDepth deep; past it the invoke step fails as ChildFailed, naming the limit")
    func depth() async throws {
        let done = try await gw.run("nest")
        #expect(done["status"] == "failed", "\(done)")
        #expect(done["error"]?["code"] == "ChildFailed")
        // nest's child (depth 1) is where the limit of 1 stops the next invoke.
        let child = try #require(done["children"].list.first?["id"]?.stringValue)
        let run = try #require(try await gw.get("/runs/\(child)").json)
        #expect(run["error"]?["message"]?.stringValue?.contains("server.maxInvokeDepth is 1") == true, "\(run)")
    }

    @Test("workflows that invoke each other are invalid, naming the cycle; they cannot be started")
    func cycle() async throws {
        let list = try await gw.get("/registry/workflows").json?["workflows"].list ?? []
        for id in ["ping", "pong"] {
            let entry = list.first { $0["id"]?.stringValue == id }
            #expect(entry?["valid"] == false, "\(id)")
            #expect(entry?["issues"].list.first?["message"]?.stringValue?.contains("invokes itself through") == true, "\(String(describing: entry))")
        }
        let r = try await gw.post("/runs", ["workflow": "ping"])
        #expect(r.status == 404)
    }
}
