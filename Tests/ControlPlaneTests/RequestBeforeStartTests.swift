import ControlPlane
import Foundation
import Testing
import Wire
import Workflow

/// A worker's requests are served as they come while its events are stored one
/// after the other, so a request can reach the control plane before the
/// `step.started` of its step has been handled. It waits for that start, and
/// is answered by it, or refused when the segment ends without it.
@Suite("A request that overtakes its step's start")
struct RequestBeforeStartTests {
    static let workflow = """
        id: early
        steps:
          - id: deploy
            exec:
              argv: [sh, -c, "echo deployed"]
              env: { TOKEN: "${{ secrets.TOKEN }}" }
          - id: notify
            exec:
              argv: [sh, -c, "echo notified"]
              env: { TOKEN: "${{ secrets.TOKEN }}" }
        """

    static let token = "tok-93be0c1d"

    /// Sends `secret.resolve` for `step` without waiting for its answer.
    static let ask = """
        def ask(step):
            nextid[0] += 1
            send({"jsonrpc": "2.0", "id": nextid[0], "method": "secret.resolve",
                  "params": {"jobId": JOB, "step": step, "name": "TOKEN"}})
            return nextid[0]
        def answer_to(me):
            while True:
                m = recv()
                if m.get("id") == me: return m
        """

    func run(_ worker: String) async throws -> (RunRecord, [AuditEntry], RunHarness) {
        let h = try await RunHarness.start(worker: Self.ask + "\n" + worker, workflows: ["early.workflow.yaml": Self.workflow],
                                           secrets: ["TOKEN": Self.token])
        let id = try await h.run("early")
        return (try await h.record(id), h.entries().filter { $0.runId == id }, h)
    }

    @Test("it is served once the start is handled, and the run goes on")
    func servedAfterTheStart() async throws {
        let (run, audit, h) = try await run("""
            me = ask("deploy")
            time.sleep(0.3)
            emit("step.started", "deploy", attempt=1, kind="exec")
            r = answer_to(me)
            got = r.get("result", {}).get("value") == "\(Self.token)"
            emit("step.finished", "deploy", attempt=1, output="deployed" if got else "refused: %s" % json.dumps(r))
            # The next step's request too, sent before its start right after the last step's end.
            me = ask("notify")
            emit("step.started", "notify", attempt=1, kind="exec")
            r = answer_to(me)
            got = r.get("result", {}).get("value") == "\(Self.token)"
            emit("step.finished", "notify", attempt=1, output="notified" if got else "refused: %s" % json.dumps(r))
            answer("succeeded", output="notified")
            """)
        await h.cleanup()
        #expect(run.status == .succeeded, "\(run.error.map { "\($0)" } ?? "")")
        #expect(run.steps?.map(\.output) == [.string("deployed"), .string("notified")])
        #expect(audit.filter { $0.action == "secret.accessed" }.map { $0.details["step"] } == ["deploy", "notify"])
        #expect(!audit.contains { $0.action == "secret.denied" })
    }

    // A hang guard, not a speed claim: the wait is 30 seconds, and a segment
    // that ends must end it long before that.
    @Test("it is refused when the segment ends without the start", .timeLimit(.minutes(1)))
    func refusedAtTheEnd() async throws {
        let (run, _, h) = try await run("""
            # No pause before the answer: the request is judged as its frame is
            # read (busy), however late the gateway takes it up.
            me = ask("notify")
            emit("step.started", "deploy", attempt=1, kind="exec")
            emit("step.failed", "deploy", "gave up", attempt=1, code="ExecFailed", willRetry=False, durationMs=1)
            answer("failed", error={"code": "ExecFailed", "step": "deploy", "message": "gave up"})
            r = answer_to(me)
            """)
        defer { Task { await h.cleanup() } }
        #expect(run.status == .failed)
        var denied: AuditEntry?
        for _ in 0..<250 where denied == nil {
            denied = h.entries().first { $0.runId == run.id && $0.action == "secret.denied" }
            if denied == nil { try await Task.sleep(for: .milliseconds(20)) }
        }
        let entry = try #require(denied, "no secret.denied within 5 s of the run's end")
        #expect(entry.details["reason"] == "step notify is not running in this worker", "\(entry.details)")
        #expect(!h.entries().contains { $0.action == "secret.accessed" })
    }

    @Test("one sent after the job's answer is the finishing worker's: refused as a violation, however soon the gateway takes it up", .timeLimit(.minutes(1)))
    func afterTheAnswer() async throws {
        let (run, _, h) = try await run("""
            emit("step.started", "deploy", attempt=1, kind="exec")
            emit("step.failed", "deploy", "gave up", attempt=1, code="ExecFailed", willRetry=False, durationMs=1)
            # The answer and the request in one write: the gateway reads both
            # before it can close the channel on the answer.
            frames = b""
            for obj in [{"jsonrpc": "2.0", "id": job["id"], "result": {"status": "failed", "events": sent,
                         "error": {"code": "ExecFailed", "step": "deploy", "message": "gave up"}}},
                        {"jsonrpc": "2.0", "id": 999, "method": "secret.resolve",
                         "params": {"jobId": JOB, "step": "deploy", "name": "TOKEN"}}]:
                b = json.dumps(obj).encode()
                frames += struct.pack(">I", len(b)) + b
            s.write(frames)
            linger()
            """)
        defer { Task { await h.cleanup() } }
        #expect(run.status == .failed)
        var exited: AuditEntry?
        for _ in 0..<250 where exited == nil {
            exited = h.entries().first { $0.action == "worker.exited" && $0.details["reason"] != nil }
            if exited == nil { try await Task.sleep(for: .milliseconds(20)) }
        }
        let entry = try #require(exited, "no worker was killed within 5 s of the run's end")
        #expect(entry.details["reason"] == "protocol violation: secret.resolve is not allowed while finishing", "\(entry.details)")
        #expect(!h.entries().contains { $0.action == "secret.accessed" })
    }
}
