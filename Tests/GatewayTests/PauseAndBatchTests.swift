import Foundation
import SkelmClient
import Testing
import Workflow

@Suite("Pause, resume and batches")
struct PauseAndBatchTests {
    @Test("pause refuses new runs and batches with 503 and the reason, lets a running run finish, survives a restart; resume lifts it")
    func pauseAndResume() async throws {
        let gw = try await TestGateway.started(workflows: TestWorkflows.all)
        defer { gw.cleanupLater() }
        let running = try await gw.run("slow", ["seconds": "1"], sync: false)["id"]!.stringValue!

        let paused = try await gw.post("/gateway/pause", ["reason": "disk maintenance"])
        #expect(paused.status == 200)
        #expect(paused.json?["state"] == "paused")
        #expect(paused.json?["pause"]?["by"]?.stringValue?.hasPrefix("unix:") == true)

        let refused = try await gw.post("/runs", ["workflow": "hello", "input": ["name": "x"]])
        #expect(refused.status == 503)
        #expect(refused.json?["error"]?["code"] == "paused")
        #expect(refused.errorMessage.contains("disk maintenance"))
        let batch = try await gw.post("/v1/batch/runs", ["runs": [["workflow": "hello", "input": ["name": "x"]]]])
        #expect(batch.status == 503)
        let ready = try await gw.get("/readyz")
        #expect(ready.status == 503)
        #expect(ready.json?["reason"]?.stringValue?.contains("paused") == true)

        // What was accepted before the pause carries on.
        let done = try await gw.waitForStatus(running, ["succeeded", "failed"])
        #expect(done["status"] == "succeeded")

        // A restart does not quietly lift it.
        #expect(await gw.stop() == 0)
        try await gw.start()
        #expect(try await gw.post("/runs", ["workflow": "hello", "input": ["name": "x"]]).status == 503)
        let status = try await gw.cli(["gateway", "status", "--json"])
        #expect(JSONValue.parse(status.stdout)?["state"] == "paused", "\(status)")

        let resumed = try await gw.cli(["gateway", "resume"])
        #expect(resumed.status == 0, "\(resumed)")
        #expect(try await gw.post("/runs", ["workflow": "hello", "input": ["name": "x"]]).status == 202)
        #expect(try await gw.get("/readyz").status == 200)

        let audit = try await gw.get("/audit?action=gateway.*&limit=100").json?["entries"].list ?? []
        let actions = audit.compactMap { $0["action"]?.stringValue }
        #expect(actions.contains("gateway.paused"))
        #expect(actions.contains("gateway.resumed"))
    }

    @Test("a batch of runs answers each item with a stable description; over the cap is 413 and starts nothing")
    func batchRuns() async throws {
        let gw = try await TestGateway.started(workflows: TestWorkflows.all, config: TestGateway.config(server: "{ host: 127.0.0.1, port: 0, maxBatchItems: 3 }"))
        defer { gw.cleanupLater() }
        let reply = try await gw.post("/v1/batch/runs", ["runs": [
            ["workflow": "hello", "input": ["name": "a"], "idempotencyKey": "batch-1"],
            ["workflow": "nope"],
            ["workflow": "hello", "input": ["name": 5]],
        ]])
        #expect(reply.status == 200, "\(reply.errorMessage)")
        let results = reply.json?["results"].list ?? []
        #expect(results.map { $0["description"]?.stringValue ?? "" } == ["started", "workflow-not-found", "invalid-input"])
        #expect(reply.json?["summary"]?["started"] == 1)
        let id = try #require(results.first?["runId"]?.stringValue)
        #expect(try await gw.waitForStatus(id, ["succeeded"])["status"] == "succeeded")
        // The same idempotency key again is the same run.
        let again = try await gw.post("/v1/batch/runs", ["runs": [["workflow": "hello", "input": ["name": "a"], "idempotencyKey": "batch-1"]]])
        #expect(again.json?["results"].list.first?["runId"]?.stringValue == id)
        #expect(again.json?["results"].list.first?["description"] == "existing")

        let before = try await gw.get("/runs?limit=1000").json?["runs"].list.count
        let tooMany = try await gw.post("/v1/batch/runs", ["runs": .array(Array(repeating: ["workflow": "hello"], count: 4))])
        #expect(tooMany.status == 413)
        #expect(tooMany.errorMessage.contains("server.maxBatchItems"))
        #expect(try await gw.get("/runs?limit=1000").json?["runs"].list.count == before)
        for bad: JSONValue in [["runs": []], ["runs": "x"], ["other": 1]] {
            #expect(try await gw.post("/v1/batch/runs", bad).status == 400, "\(bad)")
        }
    }

    @Test("a batch cancel says cancelled, not-found or already-finished for each id")
    func batchCancel() async throws {
        let gw = try await TestGateway.started(workflows: TestWorkflows.all)
        defer { gw.cleanupLater() }
        let slow = try await gw.run("slow", ["seconds": "30"], sync: false)["id"]!.stringValue!
        let quick = try await gw.run("hello", ["name": "q"])["id"]!.stringValue!
        let reply = try await gw.post("/v1/batch/cancel", ["runs": [.string(slow), "run_doesnotexist", .string(quick)]])
        #expect(reply.status == 200)
        let results = reply.json?["results"].list ?? []
        #expect(results.map { $0["description"]?.stringValue ?? "" } == ["cancelled", "not-found", "already-finished"])
        #expect(try await gw.get("/runs/\(slow)").json?["status"] == "cancelled")
    }
}
