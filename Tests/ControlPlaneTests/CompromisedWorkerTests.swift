import ControlPlane
import Foundation
import Testing
import Wire
import Workflow

/// One workflow with every kind of container, a secret two steps reference,
/// an approval, and a step after it.
private let claimsWorkflow = """
    id: claims
    steps:
      - id: prepare
        run: echo prepare
      - id: work
        forEach:
          items: [1, 2]
          steps:
            - id: square
              run: echo square
      - id: pick
        branch:
          cases:
            - if: ${{ true }}
              steps: [{ id: big, run: echo big }]
          otherwise: [{ id: small, run: echo small }]
      - id: deploy
        exec:
          argv: [sh, -c, "echo deployed"]
          env: { TOKEN: "${{ secrets.TOKEN }}" }
      - id: notify
        exec:
          argv: [sh, -c, "echo notified"]
          env: { TOKEN: "${{ secrets.TOKEN }}" }
      - id: gate
        approval: { message: "ship it?" }
      - id: after
        run: echo after
    """

private let secretValues = ["TOKEN": "tok-4f1c9a2e", "OTHER": "other-77d0b3"]

/// What the real interpreter reports for each step of `claims`, in order:
/// `legit_until(x)` plays every step before `x` that has no checkpoint yet.
private let honest = """
    OUT = {"prepare": "prepare", "deploy": "deployed", "notify": "notified", "after": "after"}
    def legit(st):
        if st == "work":
            emit("step.started", "work", attempt=1, kind="forEach")
            for i in range(2): ran("work[%d]/square" % i, "square")
            emit("step.finished", "work", attempt=1, output=["square", "square"])
        elif st == "pick":
            emit("step.started", "pick", attempt=1, kind="branch")
            emit("step.branch", "pick", case=0)
            ran("pick/big", "big")
            emit("step.finished", "pick", attempt=1, output="big")
        elif st in ("deploy", "notify"):
            emit("step.started", st, attempt=1, kind="exec")
            ok, r = secret(st, "TOKEN")
            if not ok: raise SystemExit("secret refused: %r" % r)
            emit("step.finished", st, attempt=1, output=OUT[st])
        elif st == "gate":
            emit("step.started", "gate", attempt=1, kind="approval")
            emit("step.parked", "gate", "ship it?")
        else:
            ran(st, OUT[st])
    def legit_until(stop):
        for st in ["prepare", "work", "pick", "deploy", "notify", "gate", "after"]:
            if st == stop: return
            if st not in spec["completed"]: legit(st)
    """

/// What a row must end in.
enum SafeOutcome: Sendable {
    /// A well-behaved worker: the run succeeds (through its approval) and nothing is refused.
    case succeeds
    /// The run fails as `WorkerViolation`, and `worker.violation` is audited as
    /// the worker's, naming the claim and why it was refused.
    case violation(claim: String, reason: String)
    /// Not a violation: the worker's `PermissionDenied` is audited as its own report.
    case attributed(dimension: String, decidedBy: String)
    /// The secret is refused (`secret.denied` with the reason) and never handed out.
    case secretDenied(reason: String)
    /// The run parks at its approval with the timeout and expiry of the definition.
    case parkedAsDefined
}

struct Attack: Sendable, CustomTestStringConvertible {
    let name: String
    /// Python after the prelude and `honest`.
    let worker: String
    let outcome: SafeOutcome
    /// `(type, step)` of events that must not have been persisted.
    var forged: [(String, String?)] = []
    /// Top-level steps that must not be checkpointed (or only with the honest output).
    var checkpoints: [String: JSONValue?] = [:]
    /// Approve the approval the first segment parked at and run the next segment.
    var approve = false
    var testDescription: String { name }
}

let attacks: [Attack] = [
    Attack(name: "control: a well-behaved worker runs the workflow through its approval",
           worker: """
               if not spec["completed"]:
                   legit_until("gate"); legit("gate")
                   answer("parked", parked=[{"step": "gate", "request": {"approval": {"message": "ship it?"}}}])
               else:
                   legit_until(None)
                   answer("succeeded", output="after")
               """,
           outcome: .succeeds, checkpoints: ["deploy": "deployed", "after": "after"], approve: true),
    Attack(name: "step.finished for a step that never started",
           worker: """
               legit("prepare")
               emit("step.finished", "deploy", attempt=1, output="forged")
               linger()
               """,
           outcome: .violation(claim: "step.finished deploy", reason: "deploy has not started in this segment"),
           forged: [("step.finished", "deploy")], checkpoints: ["deploy": nil]),
    Attack(name: "step.finished for a step that does not exist",
           worker: """
               legit("prepare")
               emit("step.started", "ghost", attempt=1, kind="exec")
               emit("step.finished", "ghost", attempt=1, output="boo")
               linger()
               """,
           outcome: .violation(claim: "step.started ghost", reason: "ghost is not a top-level step of claims"),
           forged: [("step.started", "ghost"), ("step.finished", "ghost")], checkpoints: ["ghost": nil]),
    Attack(name: "a top-level checkpoint for a nested step",
           worker: """
               legit("prepare")
               emit("step.started", "square", attempt=1, kind="exec")
               emit("step.finished", "square", attempt=1, output="forged")
               linger()
               """,
           outcome: .violation(claim: "step.started square", reason: "square is not a top-level step of claims"),
           forged: [("step.started", "square"), ("step.finished", "square")], checkpoints: ["square": nil]),
    Attack(name: "a nested step outside a running parent",
           worker: """
               legit("prepare")
               emit("step.started", "work[0]/square", attempt=1, kind="exec")
               linger()
               """,
           outcome: .violation(claim: "step.started work[0]/square", reason: "work, which holds work[0]/square, is not running"),
           forged: [("step.started", "work[0]/square")]),
    Attack(name: "a step in the branch case that was not chosen",
           worker: """
               legit_until("pick")
               emit("step.started", "pick", attempt=1, kind="branch")
               emit("step.branch", "pick", case=0)
               emit("step.started", "pick/small", attempt=1, kind="exec")
               linger()
               """,
           outcome: .violation(claim: "step.started pick/small", reason: "not in the case branch pick chose"),
           forged: [("step.started", "pick/small")]),
    Attack(name: "a top-level step out of order",
           worker: """
               legit("prepare")
               emit("step.started", "after", attempt=1, kind="exec")
               emit("step.finished", "after", attempt=1, output="forged")
               linger()
               """,
           outcome: .violation(claim: "step.started after", reason: "cannot start before work, which comes before it, has ended"),
           forged: [("step.started", "after")], checkpoints: ["after": nil]),
    Attack(name: "an event type the catalogue does not know (a forged run.succeeded)",
           worker: """
               legit("prepare")
               emit("run.succeeded", None)
               linger()
               """,
           outcome: .violation(claim: "run.succeeded", reason: "not an event type of the catalogue"),
           forged: [("run.succeeded", nil)]),
    Attack(name: "parked at a step that is not an approval",
           worker: """
               legit("prepare")
               emit("step.started", "work", attempt=1, kind="forEach")
               answer("parked", parked=[{"step": "work", "request": {"approval": {"message": "approve me"}}, "onTimeout": "approve", "timeoutMs": 1}])
               linger()
               """,
           outcome: .violation(claim: "job.run parked at work", reason: "no step parked in this segment")),
    Attack(name: "a step.parked event for a step that is not an approval",
           worker: """
               legit("prepare")
               emit("step.started", "work", attempt=1, kind="forEach")
               emit("step.parked", "work", "approve me")
               linger()
               """,
           outcome: .violation(claim: "step.parked work", reason: "work is a forEach step, which does not park"),
           forged: [("step.parked", "work")]),
    Attack(name: "claims the approval's outcome itself",
           worker: """
               legit_until("gate")
               emit("step.started", "gate", attempt=1, kind="approval")
               emit("step.finished", "gate", attempt=1, output={"approved": True, "actor": "mallory"})
               linger()
               """,
           outcome: .violation(claim: "step.finished gate", reason: "only the gateway ends it"),
           forged: [("step.finished", "gate")], checkpoints: ["gate": nil]),
    Attack(name: "parks at the approval but sets its own expiry to approve itself",
           worker: """
               legit_until("gate"); legit("gate")
               answer("parked", parked=[{"step": "gate", "request": {"approval": {"message": "ship it?"}}, "onTimeout": "approve", "timeoutMs": 1}])
               linger()
               """,
           outcome: .parkedAsDefined),
    Attack(name: "restarts a checkpointed step to overwrite its output",
           worker: """
               if not spec["completed"]:
                   legit_until("gate"); legit("gate")
                   answer("parked", parked=[{"step": "gate", "request": {"approval": {"message": "ship it?"}}}])
               else:
                   emit("step.started", "deploy", attempt=1, kind="exec")
                   emit("step.finished", "deploy", attempt=1, output="forged")
                   linger()
               """,
           outcome: .violation(claim: "step.started deploy", reason: "already succeeded in an earlier segment"),
           checkpoints: ["deploy": "deployed"], approve: true),
    // The gateway waits up to ten quiet seconds for events an answer counts
    // but that never come: that wait must end, and the claim be refused.
    Attack(name: "answers after more events than it sent",
           worker: """
               emit("step.started", "prepare", attempt=1, kind="exec")
               answer("failed", events=sent + 2, error={"code": "ExecFailed", "step": "prepare", "message": "exit 1"})
               linger()
               """,
           outcome: .violation(claim: "job.run answered after 3 events", reason: "only 1 arrived")),
    Attack(name: "answers succeeded without running anything",
           worker: """
               answer("succeeded", output="forged")
               linger()
               """,
           outcome: .violation(claim: "job.run succeeded", reason: "top-level step prepare is not started")),
    Attack(name: "step.failed with PermissionDenied is the worker's report, not the gateway's decision",
           worker: """
               emit("step.started", "prepare", attempt=1, kind="exec")
               fail("prepare", "PermissionDenied", "PermissionDenied: allowedExecutables does not allow /usr/bin/id",
                    dimension="allowedExecutables", value="/usr/bin/id")
               """,
           outcome: .attributed(dimension: "allowedExecutables", decidedBy: "worker")),
    Attack(name: "a secrets denial the gateway never made is the worker's claim",
           worker: """
               emit("step.started", "prepare", attempt=1, kind="exec")
               fail("prepare", "PermissionDenied", "PermissionDenied: secrets does not allow TOKEN", dimension="secrets", value="TOKEN")
               """,
           outcome: .attributed(dimension: "secrets", decidedBy: "worker")),
    Attack(name: "secret.resolve for a step that is not running",
           worker: """
               emit("step.started", "prepare", attempt=1, kind="exec")
               ok, r = secret("notify", "TOKEN")
               fail("prepare", "PermissionDenied", "secret answer: %s" % ("value" if ok else "error"), dimension="secrets", value="TOKEN")
               """,
           outcome: .secretDenied(reason: "step notify is not running in this worker")),
    Attack(name: "secret.resolve for a secret the running step does not reference",
           worker: """
               emit("step.started", "prepare", attempt=1, kind="exec")
               ok, r = secret("prepare", "TOKEN")
               fail("prepare", "PermissionDenied", "secret answer: %s" % ("value" if ok else "error"), dimension="secrets", value="TOKEN")
               """,
           outcome: .secretDenied(reason: "step prepare does not reference secrets.TOKEN in its env")),
    Attack(name: "secret.resolve for a step that does not exist",
           worker: """
               emit("step.started", "prepare", attempt=1, kind="exec")
               ok, r = secret("work[0]/deploy", "TOKEN")
               fail("prepare", "PermissionDenied", "secret answer: %s" % ("value" if ok else "error"), dimension="secrets", value="TOKEN")
               """,
           outcome: .secretDenied(reason: "deploy is not a step inside work")),
]

@Suite("A compromised worker is not believed")
struct CompromisedWorkerTests {
    // A hang guard, not a speed claim: a wait for events that never come
    // must end (after ten quiet seconds) rather than hold the run forever.
    @Test("each claim is checked against the definition and the run's state", .timeLimit(.minutes(2)), arguments: attacks)
    func attack(_ attack: Attack) async throws {
        let h = try await RunHarness.start(worker: honest + "\n" + attack.worker, workflows: ["claims.workflow.yaml": claimsWorkflow],
                                           secrets: secretValues)
        do {
            try await check(attack, h)
        } catch {
            await h.cleanup()
            throw error
        }
        await h.cleanup()
    }

    func check(_ attack: Attack, _ h: RunHarness) async throws {
        let runId = try await h.run("claims")
        if attack.approve {
            let pending = try await h.store.approvals(runId: runId)
            let status = try await h.record(runId).status
            try #require(pending.count == 1, "run is \(status)")
            _ = try await h.runs.decide(approval: pending[0].id, approve: true, actor: "alice", reason: nil)
            // The decision queues the run again: wait for the next segment to take it and end.
            _ = await waitFor { (try? await h.record(runId))?.segments == 2 }
            await h.settle(runId)
        }
        let run = try await h.record(runId)
        let audit = h.entries().filter { $0.runId == runId }
        let events = try await h.store.events(runId: runId)
        // Nothing of a refused claim is persisted: no event, no checkpoint.
        for (type, step) in attack.forged {
            #expect(!events.contains { $0.type == type && $0.step == step }, "persisted: \(type) \(step ?? "")")
        }
        let checkpoints = try await h.store.checkpoints(runId: runId)
        for (step, honest) in attack.checkpoints {
            #expect(checkpoints[step] == honest, "checkpoint \(step): \(checkpoints[step].map { "\($0)" } ?? "none")")
        }
        // The worker whose claims these are: the last segment's.
        let job = audit.last { $0.action == "run.started" || $0.action == "run.resumed" }?.details["job"] ?? ""
        let pid = try #require(await h.pid(ofJob: job), "no worker.exited for job \(job)")
        let worker = "worker:\(pid)"

        switch attack.outcome {
        case .succeeds:
            #expect(run.status == .succeeded, "\(run.error.map { "\($0)" } ?? "")")
            #expect(run.output == "after")
            #expect(!audit.contains { $0.action == "worker.violation" })
            #expect(audit.filter { $0.action == "secret.accessed" }.count == 2)
            #expect(audit.first { $0.action == "approval.requested" }?.details["reportedBy"]?.hasPrefix("worker:") == true)
            #expect(run.steps?.map(\.path).contains("work[1]/square") == true)
        case let .violation(claim, reason):
            #expect(run.status == .failed)
            #expect(run.error?.code == FailureCode.workerViolation.rawValue, "\(run.error.map { "\($0)" } ?? "")")
            #expect(run.error?.message.contains(claim) == true, "\(run.error?.message ?? "")")
            let entry = try #require(audit.first { $0.action == "worker.violation" }, "\(audit.map(\.action))")
            #expect(entry.actor == worker)
            #expect(entry.details["claim"]?.contains(claim) == true, "\(entry.details)")
            #expect(entry.details["reason"]?.contains(reason) == true, "\(entry.details)")
            #expect(audit.last?.action == "run.finished")
            #expect(audit.last?.details["code"] == FailureCode.workerViolation.rawValue)
            // The worker is killed; it does not get to exit on its own terms.
            let exited = h.entries().first { $0.action == "worker.exited" && $0.details["job"] == job }
            #expect(exited?.details["status"] == "killed by SIGKILL", "\(exited?.details ?? [:])")
            #expect(try await h.store.approvals(runId: runId).isEmpty || attack.approve)
            #expect(events.last?.type == "run.failed")
        case let .attributed(dimension, decidedBy):
            #expect(run.status == .failed)
            #expect(run.error?.code == FailureCode.permissionDenied.rawValue,
                    "\(run.error.map { "\($0)" } ?? ""); events: \(events.map(\.type)); audit: \(audit.map(\.action))")
            let entry = try #require(await waitForEntry(h, runId, "permission.denied"))
            #expect(entry.actor == worker)
            #expect(entry.details["decidedBy"] == decidedBy)
            #expect(entry.details["dimension"] == dimension)
            #expect(!audit.contains { $0.action == "worker.violation" })
        case let .secretDenied(reason):
            #expect(run.status == .failed)
            #expect(run.error?.message.contains("secret answer: error") == true, "\(run.error?.message ?? "")")
            let denied = try #require(audit.first { $0.action == "secret.denied" }, "\(audit.map(\.action))")
            #expect(denied.actor == "gateway")
            #expect(denied.details["requestedBy"] == worker)
            #expect(denied.details["reason"] == reason, "\(denied.details)")
            #expect(!audit.contains { $0.action == "secret.accessed" })
            for value in secretValues.values {
                #expect(!events.contains { ($0.message ?? "").contains(value) || ($0.data?.jsonText ?? "").contains(value) })
            }
        case .parkedAsDefined:
            #expect(run.status == .waiting)
            let approval = try #require(try await h.store.approvals(runId: runId).first)
            #expect(approval.step == "gate")
            #expect(approval.onTimeout == "fail")
            #expect(approval.expiresAt == nil)
            try await Task.sleep(for: .milliseconds(50))
            await h.runs.expireApprovals()
            #expect(try await h.store.approvals(runId: runId).first?.status == .pending)
            #expect(audit.first { $0.action == "approval.requested" }?.details["reportedBy"] == worker)
        }

    }

    func waitForEntry(_ h: RunHarness, _ runId: String, _ action: String) async -> AuditEntry? {
        for _ in 0..<250 {
            if let e = h.entries().first(where: { $0.runId == runId && $0.action == action }) { return e }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return nil
    }

    func waitFor(_ condition: () async -> Bool) async -> Bool {
        for _ in 0..<500 {
            if await condition() { return true }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return false
    }
}
