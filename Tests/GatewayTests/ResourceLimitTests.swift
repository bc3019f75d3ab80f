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
        ], config: TestGateway.defaultConfig.replacingOccurrences(
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
        // Nothing of the job is left behind to keep using the disk.
        let left = (try? FileManager.default.contentsOfDirectory(atPath: gw.stateDir + "/workspaces")) ?? []
        #expect(left.allSatisfy { $0.hasPrefix(".") }, "\(left)")
    }

    @Test("a job within its budget is not disturbed")
    func withinBudget() async throws {
        let run = try await gw.run("fill", ["mode": "small"])
        #expect(run["status"] == "succeeded", "\(run)")
        #expect(run["output"] == "done")
    }
}
