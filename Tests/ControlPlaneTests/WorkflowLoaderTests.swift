import ControlPlane
import Testing
import Workflow

@Suite struct WorkflowLoaderTests {
    func issues(_ text: String) -> [WorkflowIssue] {
        if case let .invalid(_, issues) = WorkflowLoader.parse(text, file: "w.yaml", defaultId: "w") { return issues }
        return []
    }

    @Test func validWorkflowLoadsEveryKind() throws {
        let text = """
            id: all
            timeout: 2m
            env: { MODE: "${{ input.mode }}" }
            steps:
              - id: a
                retry: 2
                exec: { argv: [echo, hi], env: { X: "1" }, stdin: text }
              - id: b
                parallel:
                  - { id: b1, run: echo 1 }
                  - { id: b2, exec: { script: "print(1)", interpreter: python3 } }
              - id: c
                forEach: { items: "${{ steps.a.output }}", concurrency: 2, steps: [{ id: c1, exec: { argv: [echo, "${{ item }}", "${{ index }}"] } }] }
              - id: d
                branch: { cases: [{ if: "env.MODE == 'x'", steps: [{ id: d1, run: echo x }] }], otherwise: [{ id: d2, run: echo y }] }
              - id: e
                loop: { max: 3, until: "iteration >= 1", steps: [{ id: e1, run: "echo ${{ iteration }}" }] }
                timeout: 500ms
            """
        guard case let .valid(def) = WorkflowLoader.parse(text, file: "w.yaml", defaultId: nil) else {
            Issue.record("did not load: \(issues(text))"); return
        }
        #expect(def.id == "all")
        #expect(def.timeoutMs == 120_000)
        #expect(def.steps.map(\.kindName) == [.exec, .parallel, .forEach, .branch, .loop])
        #expect(def.steps[0].retry?.max == 2)
        #expect(def.steps[1].parallel?.steps[1].exec?.interpreter == ["python3"])
        #expect(def.steps[2].forEach?.concurrency == 2)
        #expect(def.steps[4].timeoutMs == 500)
        #expect(def.steps[4].loop?.max == 3)
    }

    @Test func everyProblemIsReportedWithPathAndLine() {
        let found = issues("""
            id: bad
            steps:
              - id: one
                exec: { argv: [echo, "${{ steps.missing.output }}"] }
              - id: one
                run: echo dup
              - id: two
                exec: { argv: [echo], script: "x" }
              - id: three
                retry: { max: 1000 }
              - id: four
                forEach: { items: 5, steps: [] }
              - id: five
                run: "${{ item }}"
              - id: six
                exec: { argv: [env], env: { LD_PRELOAD: /x.so } }
              - id: seven
                agent: { name: coder }
              - id: eight
                run: "${{ input.x > }}"
            """)
        let byLine = Dictionary(grouping: found, by: { $0.line ?? 0 })
        #expect(byLine[4]?.first?.message.contains("steps.missing") == true)
        #expect(byLine[5]?.first?.message.contains("duplicate step id 'one'") == true)
        #expect(found.contains { $0.path == "steps[2](two).exec" && $0.message.contains("exactly one of argv") })
        #expect(found.contains { $0.path == "steps[3](three).retry.max" && $0.message.contains("between 0 and 100") })
        #expect(found.contains { $0.path == "steps[4](four).forEach.items" })
        #expect(found.contains { $0.path == "steps[5](five).run" && $0.message.contains("'item' is not defined here") })
        #expect(found.contains { $0.path == "steps[6](six).exec.env.LD_PRELOAD" })
        #expect(found.contains { $0.path == "steps[7](seven).agent.name" && $0.message.contains("unknown key") }, "\(found)")
        #expect(found.contains { $0.path == "steps[8](eight).run" })
        #expect(found.allSatisfy { $0.line != nil })
    }

    @Test func structuralErrors() {
        #expect(issues("steps: []").contains { $0.message.contains("at least one step") })
        #expect(issues("id: x").contains { $0.path == "steps" })
        #expect(issues("id: x\nsteps: [{ id: a }]").contains { $0.message.contains("exactly one kind") })
        #expect(issues("id: x\nsteps: [{ id: a, run: echo, exec: { argv: [x] } }]").contains { $0.message.contains("found exec and run") })
        #expect(issues("id: 'bad id'\nsteps: [{ id: a, run: echo }]").contains { $0.path == "id" })
        #expect(issues("id: x\ninput: { type: strng }\nsteps: [{ id: a, run: echo }]").contains { $0.path == "input" })
        #expect(issues("{ not yaml").first?.message.contains("not valid YAML") == true)
        #expect(issues("id: x\nsteps: [{ id: a, run: echo }]\nextra: 1").contains { $0.path == "extra" && $0.line == 3 })
    }

    @Test func jsonWorkflowsLoadToo() {
        let json = #"{"id": "j", "steps": [{"id": "a", "exec": {"argv": ["echo", "${{ input.n }}"]}}], "input": {"type": "object"}}"#
        guard case let .valid(def) = WorkflowLoader.parse(json, file: "j.workflow.json", defaultId: nil) else {
            Issue.record("\(issues(json))"); return
        }
        #expect(def.steps.first?.exec?.argv == ["echo", "${{ input.n }}"])
        #expect(def.input == ["type": "object"])
        #expect(WorkflowLoader.defaultId("/a/b/hello.workflow.yaml") == "hello")
    }
}

/// The payload of one kind, for assertions.
extension Step {
    var exec: ExecStep? { if case let .exec(e) = kind { e } else { nil } }
    var parallel: ParallelStep? { if case let .parallel(p) = kind { p } else { nil } }
    var forEach: ForEachStep? { if case let .forEach(f) = kind { f } else { nil } }
    var loop: LoopStep? { if case let .loop(l) = kind { l } else { nil } }
}

@Suite("Script injection is caught at load")
struct ScriptInjectionLoadTests {
    func issues(_ text: String) -> [WorkflowIssue] {
        if case let .invalid(_, found) = WorkflowLoader.parse(text, file: "w.yaml", defaultId: "w") { return found }
        return []
    }

    @Test("input in a script's text or a shell's -c is an error showing the env form; allowInterpolation opts in")
    func caught() {
        let short = issues("steps:\n  - { id: greet, run: \"echo hello ${{ input.name }}\" }\n")
        #expect(short.count == 1)
        #expect(short.first?.path == "steps[0](greet).run")
        #expect(short.first?.message.contains("env") == true, "\(short)")
        let shell = issues("steps:\n  - id: greet\n    exec: { argv: [bash, -c, \"echo ${{ steps.x.output }}\"] }\n  - { id: x, run: echo x }\n")
        #expect(shell.contains { $0.path == "steps[0](greet).exec.argv[2]" }, "\(shell)")
        // Through the workflow's env: an env value made from input is input.
        let viaEnv = issues("env: { NAME: \"${{ input.name }}\" }\nsteps:\n  - { id: greet, run: \"echo ${{ env.NAME }}\" }\n")
        #expect(viaEnv.count == 1, "\(viaEnv)")
        #expect(issues("steps:\n  - id: greet\n    exec: { argv: [sh, -c, 'echo \"$NAME\"'], env: { NAME: \"${{ input.name }}\" } }\n").isEmpty)
        #expect(issues("steps:\n  - id: greet\n    exec: { script: \"echo ${{ input.name }}\", allowInterpolation: true }\n").isEmpty)
        #expect(issues("steps:\n  - id: greet\n    exec: { argv: [echo, \"${{ input.name }}\"] }\n").isEmpty, "a plain argument is no script")
    }
}
