import Foundation
import Sandbox
import Wire
import Workflow

/// What the worker template does once so that no forked worker does it again.
///
/// A fresh Swift process spends most of its first job in the runtime's first
/// conformance lookups and generic metadata instantiations, which are cached
/// per process. The template fills those caches along the paths a worker takes
/// (its sandbox spec, the RPC envelopes and pipeline, a job's decode, templates
/// and expressions, its events and result), so every fork starts with them.
///
/// Synchronous and thread-free by design: the template forks after this.
enum WarmUp {
    static func run() {
        let spec = WorkerSandboxSpec(namespaces: ["net", "mount", "pid"], workspaceRoot: "/nonexistent", connectPorts: [1])
        if let data = try? JSONEncoder().encode(spec) {
            _ = try? JSONDecoder().decode(WorkerSandboxSpec.self, from: data)
        }
        LandlockRuleset.confined(writable: ["/nonexistent"], readable: [], connectPorts: [1]).warmUp()
        LandlockRuleset.step(workspace: "/nonexistent", fsRead: [], fsWrite: [], executables: ["/bin/sh"]).warmUp()
        let frame = Frame(variables: ["x": 1])
        frame.record("add", output: ["x": 2], status: .succeeded)
        _ = frame.scope(input: ["x": 1], env: [:])

        let exec = ExecStep(argv: ["sh", "-c", "echo ${{ input.x }}"])
        let workflow = WorkflowDefinition(id: "warm-up", input: ["type": "object"], env: ["E": "${{ input.x }}"],
                                          result: "${{ steps.add.output }}",
                                          steps: [Step(id: "add", if: "${{ input.x > 0 }}", .exec(exec))])
        let job = RunJobSpec(jobId: "warm-up", runId: "warm-up", workspace: "/nonexistent/warm-up", workflow: workflow,
                             input: ["x": 1, "s": "a", "l": [true, .null]],
                             policies: ["add": StepPolicy(executables: ["/bin/sh"])])
        let event = JobEvent(jobId: "warm-up", type: "step.finished", message: "", step: "add",
                             data: ["attempt": 1, "output": ["x": 2]])
        let result = RunJobResult(status: .failed, output: ["x": 2],
                                  error: StepFailure(code: "ExecFailed", step: "add", message: "warm-up", details: ["a": "b"]),
                                  events: 1)
        let hello = WorkerHello.Params(protocolVersion: WireProtocol.version, pid: 1,
                                       sandbox: SandboxReport(active: SandboxLayer.allCases, missing: ["a": "b"], rlimits: ["nofile": 1]))
        WireWarmUp.run(job: job, event: event, result: result, hello: hello)
        WireWarmUp.runPeers(job: job, event: event, result: result, hello: hello)

        let scope = ExpressionScope(["input": job.input, "steps": ["add": ["output": ["x": 2]]], "env": ["E": "1"]])
        _ = try? Template(Template.condition("${{ input.x > 0 && input.s == 'a' }}")).evaluate(in: scope)
        _ = try? Template.string("X=${{ input.x }} ${{ env.E }}", in: scope)
        _ = try? Template.evaluate(workflow.result ?? .null, in: scope)
        _ = JSONValue.parse("{\"x\": 2}\n")
        _ = Redactor(["secret"]).json(["a": "secret value"])
    }
}
