import Foundation
import SkelmClient
import Testing
import Workflow

@Suite("Runs over HTTP", .serialized)
final class RunTests {
    let gw: TestGateway

    init() async throws {
        gw = try await TestGateway.started(workflows: TestWorkflows.all)
    }

    deinit { gw.cleanupLater() }

    @Test("a one-step workflow returns its output, steps and timings")
    func hello() async throws {
        let run = try await gw.run("hello", ["name": "Ada"])
        #expect(run["status"] == "succeeded")
        #expect(run["output"] == "Hello, Ada!")
        guard case let .array(steps)? = run["steps"] else { Issue.record("no steps"); return }
        #expect(steps.count == 1)
        #expect(steps[0]["path"] == "greet")
        #expect(steps[0]["status"] == "succeeded")
        #expect(run["startedAt"]?.stringValue != nil && run["finishedAt"]?.stringValue != nil)
        // GET /runs/:id shows the same run, field for field (the sync answer is
        // read in the transaction that ended the run, not by the same route).
        let again = try await gw.get("/runs/\(run["id"]!.stringValue!)")
        #expect(again.status == 200)
        #expect(again.json == run)
    }

    @Test("parallel and forEach fan out; outputs keep item order; nested outputs are readable later")
    func fanOut() async throws {
        let run = try await gw.run("fanout", ["numbers": [1, 2, 3, 4, 5]])
        #expect(run["status"] == "succeeded", "\(run)")
        #expect(run["output"]?["squares"] == [1, 4, 9, 16, 25])
        #expect(run["output"]?["total"] == 55)
        #expect(run["output"]?["label"] == "numbers")
    }

    @Test("retry, branch, loop and if do what they say")
    func controlFlow() async throws {
        let run = try await gw.run("flaky", ["big": false])
        #expect(run["status"] == "succeeded", "\(run)")
        #expect(run["output"] == ["size": "small", "ticks": 4, "skipped": "skipped"])
        let attempt = run["steps"].list.first { $0["path"] == "attempt" }
        #expect(attempt?["attempt"] == 3)
        // Each failed attempt is an event with the attempt number and whether it will be retried.
        let events = try await gw.get("/runs/\(run["id"]!.stringValue!)/events", headers: [("Accept", "application/json")])
        guard case let .array(list)? = events.json?["events"] else { Issue.record("no events"); return }
        let failed = list.filter { $0["type"] == "step.failed" }
        #expect(failed.count == 2)
        #expect(failed.allSatisfy { $0["data"]?["willRetry"] == true })
    }

    @Test("a failing step fails the run with its name, cause and stderr; later steps do not run")
    func failingStep() async throws {
        let run = try await gw.run("fails")
        #expect(run["status"] == "failed")
        #expect(run["error"]?["step"] == "boom")
        #expect(run["error"]?["code"] == "ExecFailed")
        #expect(run["error"]?["message"]?.stringValue?.contains("something broke") == true)
        let paths = run["steps"].list.compactMap { $0["path"]?.stringValue }
        #expect(paths == ["ok", "boom"])
    }

    @Test("a step over its timeout is killed and fails as Timeout")
    func timeout() async throws {
        let started = ContinuousClock.now
        let run = try await gw.run("timeout")
        #expect(run["status"] == "failed")
        #expect(run["error"]?["code"] == "Timeout")
        // Killed, not left to finish: the step would sleep a minute.
        #expect(ContinuousClock.now - started < .seconds(30))
    }

    @Test("an output that breaks the output schema fails the run as OutputInvalid")
    func outputSchema() async throws {
        let run = try await gw.run("badout")
        #expect(run["status"] == "failed")
        #expect(run["error"]?["code"] == "OutputInvalid")
        #expect(run["error"]?["message"]?.stringValue?.contains("output.count") == true)
    }

    @Test("input that fails the schema is a 400 naming the path; nothing is created")
    func inputSchema() async throws {
        let before = try await gw.get("/runs?limit=1000").json?["runs"]
        let r = try await gw.post("/runs", ["workflow": "hello", "input": ["name": ""]])
        #expect(r.status == 400)
        #expect(r.json?["error"]?["code"] == "invalid_input")
        #expect(r.errorMessage.contains("input.name"))
        let missing = try await gw.post("/runs", ["workflow": "hello", "input": [:]])
        #expect(missing.status == 400)
        #expect(missing.errorMessage.contains("input.name: is required"))
        #expect(try await gw.get("/runs?limit=1000").json?["runs"] == before)
    }

    @Test("bad requests get JSON errors with the right status and lose nothing")
    func badRequests() async throws {
        let malformed = try await gw.client.send(.POST, "/runs", body: Data("{\"workflow\": ".utf8))
        #expect(malformed.status == 400)
        #expect(malformed.json?["error"]?["code"] == "invalid_json")
        let notObject = try await gw.client.send(.POST, "/runs", body: Data("[1]".utf8))
        #expect(notObject.status == 400)
        let huge = try await gw.client.send(.POST, "/runs", body: Data(("{\"workflow\":\"hello\",\"input\":{\"name\":\"" + String(repeating: "x", count: 100_000) + "\"}}").utf8))
        #expect(huge.status == 413)
        #expect(huge.json?["error"]?["code"] == "payload_too_large")
        let unknownField = try await gw.post("/runs", ["workflow": "hello", "inptu": [:]])
        #expect(unknownField.status == 400)
        #expect(unknownField.errorMessage.contains("inptu"))
        let noWorkflow = try await gw.post("/runs", ["workflow": "nope"])
        #expect(noWorkflow.status == 404)
        let broken = try await gw.post("/runs", ["workflow": "broken"])
        #expect(broken.status == 404)
        let noRun = try await gw.get("/runs/run_missing")
        #expect(noRun.status == 404)
        #expect(noRun.json?["error"]?["code"] == "not_found")
        let noRoute = try await gw.get("/nowhere")
        #expect(noRoute.status == 404)
        #expect(noRoute.json?["error"]?["message"] != nil)
        // The gateway is still fine.
        #expect(try await gw.run("hello", ["name": "still here"])["status"] == "succeeded")
    }

    @Test("Idempotency-Key: same key and body give the same run; another body is 409")
    func idempotency() async throws {
        let key = [("Idempotency-Key", "key-\(UUID().uuidString)")]
        let first = try await gw.post("/runs", ["workflow": "hello", "input": ["name": "once"]], headers: key)
        #expect(first.status == 202)
        let second = try await gw.post("/runs", ["workflow": "hello", "input": ["name": "once"]], headers: key)
        #expect(second.status == 200)
        #expect(second.json?["id"] == first.json?["id"])
        let other = try await gw.post("/runs", ["workflow": "hello", "input": ["name": "twice"]], headers: key)
        #expect(other.status == 409)
        #expect(other.json?["error"]?["code"] == "conflict")
        let runs = try await gw.get("/runs?workflow=hello&limit=1000").json?["runs"]
        let ids = runs.list.compactMap { $0["input"]?["name"]?.stringValue }
        #expect(ids.filter { $0 == "once" }.count == 1)
        #expect(!ids.contains("twice"))
    }

    @Test("cancel kills a running step, marks the run cancelled, and is a no-op the second time")
    func cancel() async throws {
        let marker = "\(Int.random(in: 100_000...999_999))"
        let run = try await gw.run("slow", ["seconds": .string("3" + marker)], sync: false)
        let id = run["id"]!.stringValue!
        _ = try await waitUntilRunning(id, step: "nap")
        // The step is running; its process follows a moment later (its home, its Landlock layer, the exec).
        for _ in 0..<250 where processes(matching: "sleep 3\(marker)").isEmpty { try await Task.sleep(for: .milliseconds(20)) }
        #expect(!processes(matching: "sleep 3\(marker)").isEmpty)
        let cancelled = try await gw.post("/runs/\(id)/cancel", .null)
        #expect(cancelled.status == 200)
        #expect(cancelled.json?["status"] == "cancelled")
        for _ in 0..<250 where !processes(matching: "sleep 3\(marker)").isEmpty { try await Task.sleep(for: .milliseconds(20)) }
        #expect(processes(matching: "sleep 3\(marker)").isEmpty, "the step's process outlived its cancel")
        let again = try await gw.post("/runs/\(id)/cancel", .null)
        #expect(again.status == 200)
        #expect(again.json?["status"] == "cancelled")
        // Cancelling a finished run changes nothing.
        let done = try await gw.run("hello", ["name": "x"])
        let late = try await gw.post("/runs/\(done["id"]!.stringValue!)/cancel", .null)
        #expect(late.status == 200)
        #expect(late.json?["status"] == "succeeded")
        #expect(try await gw.post("/runs/run_nope/cancel", .null).status == 404)
    }

    func waitUntilRunning(_ id: String, step: String) async throws -> JSONValue {
        for _ in 0..<500 {
            let r = try await gw.get("/runs/\(id)")
            if case let .array(steps)? = r.json?["steps"], steps.contains(where: { $0["path"]?.stringValue == step && $0["status"] == "running" }) {
                return r.json!
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw GatewayFailure(description: "step \(step) never started")
    }

    @Test("the registry lists invalid workflows with every problem and its line")
    func registry() async throws {
        let r = try await gw.get("/registry/workflows")
        guard case let .array(list)? = r.json?["workflows"] else { Issue.record("no list"); return }
        #expect(list.filter { $0["valid"] == true }.count == 8)
        guard let broken = list.first(where: { $0["id"] == "broken" }), case let .array(issues)? = broken["issues"] else {
            Issue.record("broken workflow not listed"); return
        }
        #expect(broken["valid"] == false)
        let messages = issues.compactMap { $0["message"]?.stringValue }
        #expect(messages.contains { $0.contains("steps.nope") })
        #expect(messages.contains { $0.contains("duplicate step id 'a'") })
        #expect(messages.contains { $0.contains("loop must be bounded") })
        #expect(messages.contains { $0.contains("unknown key") })
        #expect(issues.allSatisfy { $0["line"] != nil && $0["line"] != .null })
    }
}

extension RunTests {
    @Test("every route in docs/openapi.yaml is served (the docs and the server agree)")
    func openapiRoutesExist() async throws {
        let spec = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../docs/openapi.yaml").standardized.path
        let text = try String(contentsOfFile: spec, encoding: .utf8)
        var routes: [(String, String)] = []
        var current: String?
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("  /"), line.hasSuffix(":") { current = String(line.dropFirst(2).dropLast()) }
            else if !line.hasPrefix(" "), !line.isEmpty { current = nil }
            if let path = current, line == "    get:" || line == "    post:" {
                // Every `{placeholder}` becomes a value: the route must exist for it.
                let concrete = path.replacingOccurrences(of: #"\{[A-Za-z]+\}"#, with: "hello", options: .regularExpression)
                routes.append((line.contains("get") ? "GET" : "POST", concrete))
            }
        }
        #expect(routes.count >= 10)
        for (method, path) in routes {
            let reply = try await gw.client.send(method == "GET" ? .GET : .POST, path, body: method == "POST" ? Data("{}".utf8) : nil)
            #expect(!reply.errorMessage.contains("no route for"), "\(method) \(path) is documented but not served")
        }
    }
}
