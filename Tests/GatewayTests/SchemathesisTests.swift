import Foundation
import SkelmClient
import Testing
import Workflow

/// docs/openapi.yaml checked against the live gateway by schemathesis (from
/// PyPI): it generates requests from the document, valid and invalid, and
/// fails on any 5xx and on any response the document does not describe.
@Suite("OpenAPI conformance (schemathesis)")
struct SchemathesisTests {
    static let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    @Test("every route: no 5xx, statuses, content types and bodies as docs/openapi.yaml says")
    func conformance() async throws {
        let gw = try await TestGateway.started(workflows: TestWorkflows.all)
        defer { gw.cleanupLater() }
        // The gateway serves the same document the docs hold.
        let served = try await gw.get("/openapi.yaml")
        #expect(served.status == 200)
        let spec = Self.repoRoot + "/docs/openapi.yaml"
        #expect(served.body == FileManager.default.contents(atPath: spec))

        let url = try #require(try await gw.get("/gateway/status").json?["url"]?.stringValue)
        let result = try await Self.schemathesis(spec: spec, url: url, logDir: gw.dir)
        #expect(result.status == 0, "schemathesis found problems:\n\(result.output.suffix(12_000))")
    }

    static func schemathesis(spec: String, url: String, logDir: String) async throws -> (status: Int32, output: String) {
        try await withCheckedThrowingContinuation { cont in
            Thread {
                cont.resume(with: Result {
                    let p = Process()
                    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
                    p.arguments = ["python3", "-m", "schemathesis.cli", "--config-file", repoRoot + "/Tests/GatewayTests/schemathesis.toml",
                                   "run", spec, "--url", url,
                                   "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
                                   "--phases", "examples,coverage,fuzzing", "--max-examples", "25",
                                   // One worker: CPython before 3.11.8 can fail parsing source on
                                   // two threads at once ("AST constructor recursion depth
                                   // mismatch"), which hypothesis does to describe its strategies.
                                   "--workers", "1",
                                   "--seed", "1", "--suppress-health-check", "all", "--no-color"]
                    var env = ProcessInfo.processInfo.environment
                    env["SCHEMATHESIS_HOOKS"] = nil
                    p.environment = env
                    p.currentDirectoryURL = URL(fileURLWithPath: logDir)
                    let out = Pipe()
                    p.standardOutput = out
                    p.standardError = out
                    try p.run()
                    let data = out.fileHandleForReading.readDataToEndOfFile()
                    p.waitUntilExit()
                    return (p.terminationStatus, String(decoding: data, as: UTF8.self))
                })
            }.start()
        }
    }
}
