import Foundation
import SkelmClient
import Testing
import Workflow

@Suite("skelm workflows register|unregister")
struct CLIWorkflowsTests {
    @Test("register a file by path and a zip by upload, list them with their source, run one, unregister")
    func registerAndUnregister() async throws {
        let gw = try await TestGateway.started(workflows: TestWorkflows.all)
        defer { gw.cleanupLater() }
        try FileManager.default.createDirectory(atPath: gw.dir + "/extra", withIntermediateDirectories: true)
        try "id: extra\nsteps:\n  - id: s\n    run: echo extra\n".write(toFile: gw.dir + "/extra/extra.workflow.yaml", atomically: true, encoding: .utf8)
        let byPath = try await gw.cli(["workflows", "register", gw.dir + "/extra/extra.workflow.yaml"])
        #expect(byPath.status == 0, "\(byPath)")
        #expect(byPath.stdout.contains("registered extra (path "))
        #expect(try await gw.run("extra")["status"] == "succeeded")

        // A zip, made with Python's zipfile, uploaded as multipart/form-data.
        try FileManager.default.createDirectory(atPath: gw.dir + "/zipped", withIntermediateDirectories: true)
        try "id: zipped\nsteps:\n  - id: s\n    run: echo zipped\n".write(toFile: gw.dir + "/zipped/zipped.workflow.yaml", atomically: true, encoding: .utf8)
        let zip = try await runCommand(["python3", "-m", "zipfile", "-c", gw.dir + "/flows.zip", gw.dir + "/zipped/zipped.workflow.yaml"])
        #expect(zip.status == 0, "\(zip.out)")
        let upload = try await gw.cli(["workflows", "register", gw.dir + "/flows.zip"])
        #expect(upload.status == 0, "\(upload)")
        #expect(upload.stdout.contains("registered zipped (upload "))

        let list = try await gw.cli(["workflows", "list"])
        #expect(list.stdout.contains("path " + gw.dir + "/extra/extra.workflow.yaml"), "\(list.stdout)")
        #expect(list.stdout.contains("upload "))

        // An invalid workflow: refused with its problem on stderr, nothing registered.
        try "id: bad\nsteps: []\n".write(toFile: gw.dir + "/extra/bad.workflow.yaml", atomically: true, encoding: .utf8)
        let bad = try await gw.cli(["workflows", "register", gw.dir + "/extra/bad.workflow.yaml"])
        #expect(bad.status == 1)
        #expect(bad.stderr.contains("bad.workflow.yaml"), "\(bad.stderr)")

        #expect(try await gw.cli(["workflows", "unregister", "extra"]).status == 0)
        let again = try await gw.cli(["workflows", "unregister", "extra"])
        #expect(again.status == 1)
        #expect(again.stderr.contains("404"))
        #expect(try await gw.cli(["workflows", "unregister", "hello"]).status == 1)
    }
}
