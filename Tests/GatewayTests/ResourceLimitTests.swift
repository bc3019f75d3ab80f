import Foundation
import SkelmClient
import Testing
import Workflow

/// What one job can take from the host is bounded in all, not only per file or
/// per process: the disk its files use, and how many files it makes.
@Suite("Resource limits", .serialized)
final class ResourceLimitTests {
    let gw: TestGateway

    init() async throws {
        gw = try await TestGateway.started(workflows: [
            "fill.workflow.yaml": """
                id: fill
                input: { type: object, properties: { mode: { type: string } } }
                steps:
                  - id: fill
                    timeout: 60s
                    exec:
                      interpreter: [python3]
                      env: { MODE: "${{ input.mode }}" }
                      script: |
                        import os, time
                        chunk = b"x" * (1 << 20)
                        if os.environ["MODE"] == "bytes":
                            # Many files, each under the per-file limit: only a total stops this.
                            for i in range(4096):
                                with open("f%d" % i, "wb") as f:
                                    f.write(chunk)
                                time.sleep(0.002)
                        elif os.environ["MODE"] == "files":
                            for i in range(100000):
                                open("e%d" % i, "w").close()
                        else:
                            open("small", "wb").write(chunk)
                        print("done")
                """,
            // Each output under the per-step limit; together more than the run may store.
            "chatty.workflow.yaml": """
                id: chatty
                steps:
                  - id: many
                    forEach:
                      items: ${{ input.items }}
                      steps:
                        - id: blob
                          exec: { argv: [python3, -c, "print('x' * 500000)"] }
                """,
        ], config: TestGateway.defaultConfig.replacingOccurrences(of: "sseHeartbeatSeconds: 1 }", with: "sseHeartbeatSeconds: 1, maxRunStorageMB: 8 }").replacingOccurrences(
            of: "limits: { timeoutSeconds: 20 }", with: "limits: { timeoutSeconds: 60, diskMB: 64, diskFiles: 2000, fileSizeMB: 16 }"))
    }

    deinit { gw.cleanupLater() }

    @Test("a job past its disk or file budget is stopped, with the limit named", arguments: [
        ("bytes", "passed 64 MiB (workers.limits.diskMB)"),
        ("files", "more than 2000 files (workers.limits.diskFiles)"),
    ])
    func overBudget(_ mode: String, _ expected: String) async throws {
        let run = try await gw.run("fill", ["mode": .string(mode)])
        #expect(run["status"] == "failed", "\(run)")
        #expect(run["error"]?["code"] == "ResourceLimit")
        #expect(run["error"]?["message"]?.stringValue?.contains(expected) == true, "\(run["error"] ?? .null)")
        // Nothing of the job is left behind to keep using the disk: removed just
        // after the run, off its path.
        var left: [String] = []
        for _ in 0..<500 {
            left = ((try? FileManager.default.contentsOfDirectory(atPath: gw.stateDir + "/workspaces")) ?? []).filter { !$0.hasPrefix(".") }
            if left.isEmpty { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(left.isEmpty, "\(left)")
    }

    @Test("a run whose outputs pass what it may store is stopped; the store does not grow past it")
    func storage() async throws {
        let run = try await gw.run("chatty", ["items": .array((0..<40).map { .number(Double($0)) })])
        #expect(run["status"] == "failed", "\(run["error"] ?? .null)")
        #expect(run["error"]?["code"] == "ResourceLimit")
        #expect(run["error"]?["message"]?.stringValue?.contains("passed 8 MiB (server.maxRunStorageMB)") == true)
        let events = try await gw.get("/runs/\(run["id"]!.stringValue!)/events?limit=10000", headers: [("Accept", "application/json")]).body
        #expect(events.count < 10 << 20, "\(events.count) bytes of events")
    }

    @Test("a job within its budget is not disturbed")
    func withinBudget() async throws {
        let run = try await gw.run("fill", ["mode": "small"])
        #expect(run["status"] == "succeeded", "\(run)")
        #expect(run["output"] == "done")
    }
}

/// `workers.limits` as config sets it reaches every step of a workflow run,
/// at start and after a reload, and a run keeps the limits it started with.
@Suite("Step limits from config")
struct StepLimitConfigTests {
    static let workflow = """
        id: chatty
        steps:
          - id: talk
            exec: { argv: [python3, -c, "print('x' * 5000)"] }
        """

    @Test("outputKB bounds what a step's stdout keeps; a reload changes it for the next run")
    func outputLimit() async throws {
        let gw = try await TestGateway.started(workflows: ["chatty.workflow.yaml": Self.workflow],
                                               config: TestGateway.defaultConfig.replacingOccurrences(of: "timeoutSeconds: 20", with: "timeoutSeconds: 20, outputKB: 1")
                                                .replacingOccurrences(of: "port: 0,", with: "port: 0, watchFiles: false,"))
        defer { gw.cleanupLater() }
        let small = try await gw.run("chatty")
        let kept = small["output"]?.stringValue?.count ?? Int.max
        #expect(kept <= 1024, "a 5000-byte stdout kept \(kept) bytes under outputKB: 1")

        let text = try String(contentsOfFile: gw.configPath, encoding: .utf8)
        try text.replacingOccurrences(of: "outputKB: 1", with: "outputKB: 16").write(toFile: gw.configPath, atomically: true, encoding: .utf8)
        let reload = try await gw.post("/gateway/reload", [:])
        #expect(reload.json?["applied"].list.contains { $0["key"] == "workers.limits.outputKB" } == true, "\(reload.json.map(\.jsonText) ?? "")")
        let large = try await gw.run("chatty")
        #expect((large["output"]?.stringValue?.count ?? 0) >= 5000)
    }
}
