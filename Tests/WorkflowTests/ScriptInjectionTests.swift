import Testing
import Workflow

@Suite("Script injection")
struct ScriptInjectionTests {
    func fields(script: String? = nil, argv: [String]? = nil, interpreter: [String]? = nil, stdin: String? = nil,
                untrustedEnv: Set<String> = []) -> [String] {
        ScriptInjection.findings(script: script, argv: argv, interpreter: interpreter, stdin: stdin, untrustedEnv: untrustedEnv)
            .map { "\($0.field) \($0.expression) \($0.root)" }
    }

    @Test("input in a script is a finding, and the message shows the safe form")
    func scriptMessage() {
        let f = ScriptInjection.findings(script: "echo hello ${{ input.name }}", argv: nil, interpreter: nil)
        #expect(f == [ScriptInjection.Finding(
            field: "script", expression: "${{ input.name }}", root: "input",
            message: "script interpolates ${{ input.name }} into the script's text, where a value can inject commands; "
                + "pass it through env instead (env: {NAME: \"${{ input.name }}\"} and use \"$NAME\" in the script), "
                + "or set allowInterpolation: true on the step")])
    }

    @Test("every untrusted expression in a script is a finding, once each")
    func multiple() {
        let script = """
        curl "${{ steps.a.output }}" -o out
        for x in ${{ item }}; do echo ${{ input.list[0] }}; done
        echo ${{ steps.a.output }} ${{ env.HOME_DIR }} ${{ index }} ${{ iteration }}
        """
        #expect(fields(script: script) == [
            "script ${{ steps.a.output }} steps",
            "script ${{ item }} item",
            "script ${{ input.list[0] }} input",
        ])
    }

    @Test("expressions that read untrusted roots anywhere inside are findings", arguments: [
        ("${{ format('{0}-{1}', env.A, input.b) }}", "input"),
        ("${{ toJSON(steps.fetch.output) }}", "steps"),
        ("${{ env.MAP[input.key] }}", "input"),
        ("${{ input.a == 'x' && steps.b.output || 'none' }}", "input"),
        ("${{ join(item.tags, ' ') }}", "item"),
        ("${{ secrets.TOKEN }}", "secrets"),
        ("${{ trigger.payload.title }}", "trigger"),
        ("${{ !input.flag }}", "input"),
    ])
    func nested(expression: String, root: String) {
        let found = ScriptInjection.findings(script: "run \(expression)", argv: nil, interpreter: nil)
        #expect(found.map(\.root) == [root])
        #expect(found.map(\.expression) == [expression])
    }

    @Test("env, index, iteration and literals are not findings")
    func trusted() {
        #expect(fields(script: "echo ${{ env.NAME }} ${{ index }} ${{ iteration }} ${{ 'literal' }} ${{ length(env.LIST) }}").isEmpty)
        #expect(fields(argv: ["bash", "-c", "echo ${{ env.NAME }}"]).isEmpty)
        #expect(fields(script: "echo \"$NAME\"").isEmpty)
    }

    @Test("the command string of a shell's -c is code", arguments: [
        (["sh", "-c", "echo ${{ input.x }}"], 2),
        (["/bin/bash", "-ec", "echo ${{ input.x }}"], 2),
        (["bash", "-xc", "echo ${{ input.x }}"], 2),
        (["bash", "-e", "-u", "-c", "echo ${{ input.x }}"], 4),
        (["bash", "-o", "pipefail", "-c", "echo ${{ input.x }}"], 4),
        (["bash", "-c", "--", "echo ${{ input.x }}"], 3),
        (["zsh", "-c", "echo ${{ input.x }}"], 2),
        (["dash", "-c", "echo ${{ input.x }}"], 2),
        (["ksh", "-c", "echo ${{ input.x }}"], 2),
        (["ash", "-c", "echo ${{ input.x }}"], 2),
        (["busybox", "sh", "-c", "echo ${{ input.x }}"], 3),
        (["/usr/bin/env", "bash", "-c", "echo ${{ input.x }}"], 3),
        (["env", "LANG=C", "sh", "-c", "echo ${{ input.x }}"], 4),
        (["timeout", "10", "sh", "-c", "echo ${{ input.x }}"], 4),
    ] as [([String], Int)])
    func shellCommand(argv: [String], index: Int) {
        #expect(fields(argv: argv) == ["argv[\(index)] ${{ input.x }} input"])
    }

    @Test("the message for a shell's -c names the command")
    func shellMessage() {
        let f = ScriptInjection.findings(script: nil, argv: ["bash", "-ec", "git checkout ${{ steps.plan.output.branch }}"], interpreter: nil)
        #expect(f.map(\.message) == [
            "argv[2] interpolates ${{ steps.plan.output.branch }} into the command bash runs with -c, where a value can inject commands; "
                + "pass it through env instead (env: {OUTPUT_BRANCH: \"${{ steps.plan.output.branch }}\"} and use \"$OUTPUT_BRANCH\" in the command), "
                + "or set allowInterpolation: true on the step",
        ])
    }

    @Test("behind a wrapper, the message names the interpreter")
    func wrapperMessage() {
        let f = ScriptInjection.findings(script: nil, argv: ["/usr/bin/env", "bash", "-c", "echo ${{ input.x }}"], interpreter: nil)
        #expect(f.first?.message.hasPrefix("argv[3] interpolates ${{ input.x }} into the command bash runs with -c,") == true)
    }

    @Test("arguments after a shell's command string are its positional parameters, not code")
    func positional() {
        #expect(fields(argv: ["sh", "-c", "echo \"$1\"", "sh", "${{ input.x }}"]).isEmpty)
        #expect(fields(argv: ["bash", "script.sh", "${{ input.x }}", "-c", "${{ input.y }}"]).isEmpty)
    }

    @Test("code flags of other interpreters", arguments: [
        (["python3", "-c", "print('${{ input.x }}')"], 2),
        (["python", "-c", "print('${{ input.x }}')"], 2),
        (["python3.12", "-u", "-c", "print('${{ input.x }}')"], 3),
        (["/usr/bin/python3", "-Ic", "print('${{ input.x }}')"], 2),
        (["python3", "-cprint('${{ input.x }}')"], 1),
        (["node", "-e", "console.log('${{ input.x }}')"], 2),
        (["node", "--eval", "console.log('${{ input.x }}')"], 2),
        (["node", "--eval=console.log('${{ input.x }}')"], 1),
        (["node", "-pe", "'${{ input.x }}'"], 2),
        (["node", "-r", "dotenv/config", "-e", "x('${{ input.x }}')"], 4),
        (["perl", "-e", "print '${{ input.x }}'"], 2),
        (["perl", "-E", "say '${{ input.x }}'"], 2),
        (["perl", "-lne", "print if /${{ input.x }}/"], 2),
        (["ruby", "-e", "puts '${{ input.x }}'"], 2),
        (["ruby", "-r", "json", "-e", "puts '${{ input.x }}'"], 4),
        (["php", "-r", "echo '${{ input.x }}';"], 2),
    ] as [([String], Int)])
    func interpreters(argv: [String], index: Int) {
        #expect(fields(argv: argv) == ["argv[\(index)] ${{ input.x }} input"])
    }

    @Test("the safe form speaks the interpreter's language")
    func safeForms() {
        func message(_ argv: [String]) -> String {
            ScriptInjection.findings(script: nil, argv: argv, interpreter: nil).first?.message ?? ""
        }
        #expect(message(["python3", "-c", "print(${{ input.n }})"]).contains("use os.environ[\"N\"] in the command"))
        #expect(message(["node", "-e", "f(${{ input.n }})"]).contains("use process.env.N in the command"))
        #expect(message(["perl", "-e", "f(${{ input.n }})"]).contains("use $ENV{N} in the command"))
        #expect(message(["ruby", "-e", "f(${{ input.n }})"]).contains("use ENV[\"N\"] in the command"))
        let python = ScriptInjection.findings(script: "print('${{ input.user_name }}')", argv: nil, interpreter: ["python3"])
        #expect(python.first?.message.contains("env: {USER_NAME: \"${{ input.user_name }}\"} and use os.environ[\"USER_NAME\"] in the script") == true)
    }

    @Test("perl and ruby may take several -e; each is code")
    func severalE() {
        #expect(fields(argv: ["perl", "-e", "${{ input.a }}", "-e", "${{ input.b }}"]) == [
            "argv[2] ${{ input.a }} input", "argv[4] ${{ input.b }} input",
        ])
    }

    @Test("plain arguments are not findings", arguments: [
        ["echo", "${{ input.x }}"],
        ["curl", "-H", "X-Name: ${{ input.name }}", "${{ steps.a.output.url }}"],
        ["git", "commit", "-m", "${{ input.message }}"],
        ["python3", "script.py", "-c", "${{ input.x }}"],
        ["python3", "-m", "http.server", "${{ input.port }}"],
        ["python3", "-c", "import sys; print(sys.argv[1])", "${{ input.x }}"],
        ["node", "app.js", "-e", "${{ input.x }}"],
        ["sh", "./run.sh", "${{ input.x }}"],
        ["grep", "-e", "${{ input.pattern }}", "file"],
        ["php", "-d", "${{ input.x }}", "app.php"],
    ] as [[String]])
    func plainArguments(argv: [String]) {
        #expect(fields(argv: argv).isEmpty)
    }

    @Test("a script's interpreter does not change that its text is code")
    func interpreterScript() {
        #expect(fields(script: "print('${{ input.x }}')", interpreter: ["python3"]) == ["script ${{ input.x }} input"])
        #expect(fields(script: "echo ${{ input.x }}", interpreter: ["bash", "-e"]) == ["script ${{ input.x }} input"])
    }

    @Test("stdin is code when the interpreter reads its program from stdin")
    func stdin() {
        #expect(fields(argv: ["sh"], stdin: "echo ${{ input.x }}") == ["stdin ${{ input.x }} input"])
        #expect(fields(argv: ["bash", "-s", "arg"], stdin: "echo ${{ input.x }}") == ["stdin ${{ input.x }} input"])
        #expect(fields(argv: ["python3", "-"], stdin: "print('${{ input.x }}')") == ["stdin ${{ input.x }} input"])
        #expect(fields(argv: ["cat"], stdin: "${{ input.x }}").isEmpty)
        #expect(fields(argv: ["bash", "-c", "cat"], stdin: "${{ input.x }}").isEmpty)
        #expect(fields(argv: ["python3", "job.py"], stdin: "${{ input.x }}").isEmpty)
        #expect(fields(script: "cat", stdin: "${{ input.x }}").isEmpty)
    }

    @Test("workflow env entries that carry untrusted values are findings when given")
    func taintedEnv() {
        let env = ["TITLE": "${{ input.title }}", "MODE": "fast", "BOTH": "${{ env.X }}-${{ input.y }}"]
        let tainted = ScriptInjection.untrustedEnvNames(in: env)
        #expect(tainted == ["TITLE", "BOTH"])
        #expect(fields(script: "echo ${{ env.TITLE }} ${{ env.MODE }}", untrustedEnv: tainted) == ["script ${{ env.TITLE }} env"])
        #expect(fields(script: "echo ${{ env['BOTH'] }}", untrustedEnv: tainted) == ["script ${{ env['BOTH'] }} env"])
        #expect(fields(script: "echo ${{ toJSON(env) }}", untrustedEnv: tainted) == ["script ${{ toJSON(env) }} env"])
        #expect(fields(script: "echo ${{ env.TITLE }}").isEmpty)
    }

    @Test("a template that does not parse gives no findings (the loader reports it)")
    func unparsable() {
        #expect(fields(script: "echo ${{ input.x ").isEmpty)
        #expect(fields(argv: ["sh", "-c", "echo ${{ input.( }}"]).isEmpty)
    }
}
