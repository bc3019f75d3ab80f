import Foundation
import SkelmClient
import Testing
import Workflow

@Suite("Approvals", .serialized)
final class ApprovalTests {
    let gw: TestGateway

    static let workflows: [String: String] = [
        "deploy.workflow.yaml": """
            id: deploy
            steps:
              - { id: build, run: echo built }
              - id: gate
                approval: { message: "Deploy ${{ input.version }}?", timeout: 1h }
              - { id: ship, exec: { argv: [sh, -c, 'echo "shipped by $BY"'], env: { BY: "${{ steps.gate.output.actor }}" } } }
            """,
        "hurry.workflow.yaml": """
            id: hurry
            steps:
              - id: gate
                approval: { message: "quick?", timeout: 300ms, onTimeout: "${{ 'x' }}" }
            """,
        "expiring.workflow.yaml": """
            id: expiring
            steps:
              - id: gate
                approval: { message: "quick?", timeout: 300ms }
            """,
        "autoapprove.workflow.yaml": """
            id: autoapprove
            steps:
              - id: gate
                approval: { message: "fine if nobody objects", timeout: 300ms, onTimeout: approve }
              - { id: after, run: echo went ahead }
            """,
        "nested.workflow.yaml": """
            id: nested
            steps:
              - id: outer
                parallel:
                  - { id: inner, approval: { message: "no" } }
            """,
        "sneaky.workflow.yaml": """
            id: sneaky
            steps:
              - id: try
                exec:
                  interpreter: python3
                  env: { SOCK: "${{ input.sock }}", PORT: "${{ input.port }}" }
                  script: |
                    import json, os, socket
                    out = {}
                    for name, family, addr in [("unix", socket.AF_UNIX, os.environ["SOCK"]), ("tcp", socket.AF_INET, ("127.0.0.1", int(os.environ["PORT"])))]:
                        s = socket.socket(family, socket.SOCK_STREAM)
                        s.settimeout(2)
                        try:
                            s.connect(addr); out[name] = "connected"
                        except OSError as e:
                            out[name] = "refused: %s" % e.strerror
                    print(json.dumps(out))
            """,
    ]

    init() async throws {
        gw = try await TestGateway.started(workflows: Self.workflows)
    }

    deinit { gw.cleanupLater() }

    func pending(_ runId: String) async throws -> JSONValue? {
        for _ in 0..<500 {
            if let a = try await gw.get("/approvals?run=\(runId)").json?["approvals"].list.first { return a }
            try await Task.sleep(for: .milliseconds(20))
        }
        return nil
    }

    @Test("an approval parks the run with no worker; approving resumes it from its checkpoint")
    func approve() async throws {
        let run = try await gw.run("deploy", ["version": "1.2"], sync: false)
        let id = run["id"]!.stringValue!
        let waiting = try await gw.waitForStatus(id, ["waiting"])
        #expect(waiting["status"] == "waiting")
        guard let approval = try await pending(id), let aid = approval["id"]?.stringValue else { Issue.record("no approval"); return }
        #expect(approval["message"] == "Deploy 1.2?")
        #expect(approval["status"] == "pending")
        #expect(approval["expiresAt"]?.stringValue != nil)
        #expect(aid.hasPrefix("apr_") && aid.count == 36)
        let busy = try await gw.get("/v1/workers").json?["workers"].list.filter { $0["jobId"]?.stringValue != nil }
        #expect(busy?.isEmpty == true, "a parked run holds no worker")

        // The decider is who the gateway authenticated, never a name in the body.
        let claimed = try await gw.post("/approvals/\(aid)/approve", ["actor": "alice", "reason": "looks good"])
        #expect(claimed.status == 400)
        #expect(claimed.errorMessage.contains("'actor' is not accepted"))
        let ok = try await gw.post("/approvals/\(aid)/approve", ["reason": "looks good"])
        #expect(ok.status == 200)
        #expect(ok.json?["status"] == "approved")
        let decider = "unix:" + (getpwuid(getuid()).map { String(cString: $0.pointee.pw_name) } ?? "?")
        #expect(ok.json?["decidedBy"]?.stringValue == decider)
        let done = try await gw.waitForStatus(id, ["succeeded", "failed"])
        #expect(done["status"] == "succeeded", "\(done)")
        #expect(done["output"] == .string("shipped by \(decider)"))
        #expect(done["segments"] == 2)
        let events = try await gw.get("/runs/\(id)/events", headers: [("Accept", "application/json")]).json?["events"].list ?? []
        #expect(events.filter { $0["type"] == "step.started" && $0["step"] == "build" }.count == 1)
        #expect(events.contains { $0["type"] == "run.waiting" })
        #expect(events.contains { $0["type"] == "run.resumed" })

        let again = try await gw.post("/approvals/\(aid)/deny", ["reason": "too late"])
        #expect(again.status == 409)
        #expect(try await gw.post("/approvals/apr_nope/approve", ["reason": "too late"]).status == 404)
        let audit = try await gw.get("/audit?run=\(id)&action=approval.*").json?["entries"].list.compactMap { $0["action"]?.stringValue }
        #expect(audit == ["approval.approved", "approval.requested"])
    }

    @Test("a sync run answers once it parks at an approval; a replay of its key answers with the run as it is then")
    func syncParks() async throws {
        let key = [("Idempotency-Key", "sync-park-\(UUID().uuidString)")]
        let body: JSONValue = ["workflow": "deploy", "input": ["version": "4"], "mode": "sync"]
        let first = try await gw.post("/runs", body, headers: key)
        #expect(first.status == 200)
        #expect(first.json?["status"] == "waiting", "\(String(describing: first.json))")
        #expect(first.json?["steps"].list.map { $0["path"] } == ["build", "gate"])
        #expect(first.header("Idempotent-Replayed") == nil)
        let id = try #require(first.json?["id"]?.stringValue)

        let parked = try await gw.post("/runs", body, headers: key)
        #expect(parked.status == 200)
        #expect(parked.header("Idempotent-Replayed") == "true")
        #expect(parked.json?["id"]?.stringValue == id)
        #expect(parked.json?["status"] == "waiting")

        let aid = try #require(try await pending(id)?["id"]?.stringValue)
        #expect(try await gw.post("/approvals/\(aid)/approve", ["reason": "go"]).status == 200)
        _ = try await gw.waitForStatus(id, ["succeeded", "failed"])
        let ended = try await gw.post("/runs", body, headers: key)
        #expect(ended.header("Idempotent-Replayed") == "true")
        #expect(ended.json?["status"] == "succeeded", "\(String(describing: ended.json))")
        #expect(ended.json?["steps"].list.map { $0["status"] } == ["succeeded", "succeeded", "succeeded"])
        #expect(ended.json == (try await gw.get("/runs/\(id)").json))
    }

    @Test("denying fails the run as ApprovalDenied")
    func deny() async throws {
        let run = try await gw.run("deploy", ["version": "2"], sync: false)
        let id = run["id"]!.stringValue!
        guard let aid = try await pending(id)?["id"]?.stringValue else { Issue.record("no approval"); return }
        let r = try await gw.cli(["approvals", "deny", aid, "--reason", "not today"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("denied by unix:"), "\(r.stdout)")
        let done = try await gw.waitForStatus(id, ["succeeded", "failed"])
        #expect(done["error"]?["code"] == "ApprovalDenied")
        #expect(done["error"]?["message"]?.stringValue?.contains(": not today") == true)
        #expect(done["error"]?["message"]?.stringValue?.contains("denied by unix:") == true)
    }

    @Test("expiry applies onTimeout: fail by default, approve when asked")
    func expiry() async throws {
        let expired = try await gw.run("expiring", sync: false)
        let done = try await gw.waitForStatus(expired["id"]!.stringValue!, ["succeeded", "failed"], timeout: .seconds(10))
        #expect(done["error"]?["code"] == "ApprovalExpired")
        let auto = try await gw.run("autoapprove", sync: false)
        let ok = try await gw.waitForStatus(auto["id"]!.stringValue!, ["succeeded", "failed"], timeout: .seconds(10))
        #expect(ok["status"] == "succeeded")
        #expect(ok["output"] == "went ahead")
    }

    @Test("onTimeout must be one of fail, deny, approve; an approval may sit at any depth")
    func validation() async throws {
        let list = try await gw.get("/registry/workflows").json?["workflows"].list ?? []
        #expect(list.first { $0["id"] == "nested" }?["valid"] == true)
        let hurry = list.first { $0["id"] == "hurry" }
        #expect(hurry?["valid"] == false)
        #expect(hurry?["issues"].list.first?["message"]?.stringValue?.contains("must be one of fail, deny, approve") == true, "\(String(describing: hurry))")
    }

    @Test("a pending approval survives a restart; cancelling a waiting run closes its approval")
    func restartAndCancel() async throws {
        let run = try await gw.run("deploy", ["version": "3"], sync: false)
        let id = run["id"]!.stringValue!
        guard let aid = try await pending(id)?["id"]?.stringValue else { Issue.record("no approval"); return }
        #expect(await gw.stop() == 0)
        try await gw.start()
        #expect(try await gw.get("/approvals/\(aid)").json?["status"] == "pending")
        #expect(try await gw.get("/runs/\(id)").json?["status"] == "waiting")
        let list = try await gw.cli(["approvals", "list"])
        #expect(list.stdout.contains(aid))
        let cancelled = try await gw.post("/runs/\(id)/cancel", .null)
        #expect(cancelled.json?["status"] == "cancelled")
        #expect(try await gw.get("/approvals/\(aid)").json?["status"] == "cancelled")
        #expect(try await gw.post("/approvals/\(aid)/approve", ["reason": "too late"]).status == 409)
    }

    @Test("nothing inside a worker can reach the API that approves")
    func unreachableFromWorker() async throws {
        guard case let .tcp(_, port) = gw.tcp.target else { return }
        let run = try await gw.run("sneaky", ["sock": .string(gw.stateDir + "/gateway.sock"), "port": .number(Double(port))])
        #expect(run["status"] == "succeeded", "\(run)")
        #expect(run["output"]?["unix"]?.stringValue?.hasPrefix("refused") == true)
        #expect(run["output"]?["tcp"]?.stringValue?.hasPrefix("refused") == true)
    }
}
