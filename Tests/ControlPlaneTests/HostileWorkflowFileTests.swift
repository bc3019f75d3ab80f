import ControlPlane
import Foundation
import Testing

/// Workflow and config files written to exhaust the gateway: alias bombs and
/// nesting past any real use. Each must be refused quickly with the file and
/// line, without building what the file describes.
///
/// The rule: a YAML alias (`*name`) anywhere in a workflow or config file is an
/// error; an anchor (`&name`) nobody refers to is harmless and allowed.
@Suite("Hostile workflow files", .serialized)
struct HostileWorkflowFileTests {
    /// Nine aliases of nine aliases …: `levels` lines, 9^levels nodes once expanded.
    /// With `asKey`, the last one is used as a mapping key, which Yams hashes
    /// while it builds the document.
    static func aliasBomb(levels: Int, asKey: Bool, indent: String = "") -> String {
        var lines = ["\(indent)a0: &a0 [x, x, x, x, x, x, x, x, x]"]
        for i in 1..<levels {
            lines.append("\(indent)a\(i): &a\(i) [" + Array(repeating: "*a\(i - 1)", count: 9).joined(separator: ", ") + "]")
        }
        if asKey { lines += ["\(indent)? *a\(levels - 1)", "\(indent): 1"] }
        return lines.joined(separator: "\n") + "\n"
    }

    static func workflowBomb(asKey: Bool) -> String {
        "id: bomb\ninput:\n" + aliasBomb(levels: 10, asKey: asKey, indent: "  ") + "steps:\n  - { id: s, run: echo hi }\n"
    }

    /// `depth` nested sequences or mappings under `input:`, in flow or block style.
    static func deepWorkflow(depth: Int, block: Bool) -> String {
        let body = block
            ? (0..<depth).map { String(repeating: " ", count: 2 * ($0 + 1)) + "k:" }.joined(separator: "\n") + " 1"
            : "  x: " + String(repeating: "[", count: depth) + "1" + String(repeating: "]", count: depth)
        // Under `result`, which may be any JSON: an input schema would refuse the made-up keys.
        return "id: deep\nresult:\n\(body)\nsteps:\n  - { id: s, run: echo hi }\n"
    }

    /// Writes `text` to a file of its own for `body`, and removes it after.
    static func withFile<T>(_ text: String, name: String, _ body: (String) throws -> T) throws -> T {
        let dir = "/tmp/skelm-hostile-\(UUID().uuidString.prefix(8).lowercased())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = "\(dir)/\(name)"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return try body(path)
    }

    static func issues(_ outcome: WorkflowLoader.Outcome) -> [WorkflowIssue] {
        if case let .invalid(_, issues) = outcome { return issues }
        return []
    }

    /// The process's peak resident set, in MiB (Linux reports KiB).
    static func peakMiB() -> Int {
        var usage = rusage()
        getrusage(Int32(RUSAGE_SELF.rawValue), &usage)
        return usage.ru_maxrss / 1024
    }

    /// Runs `body`, failing the test if it hangs (30 s) or raises the peak
    /// resident set by 500 MiB. The bombs here would take hours and gigabytes;
    /// the bounds are that far from the refusal (milliseconds, a few MiB) so
    /// that a loaded machine, or another test of this process raising the peak
    /// meanwhile, cannot fail them.
    static func cheaply<T>(_ body: () throws -> T) rethrows -> T {
        let before = peakMiB(), start = ContinuousClock.now
        let result = try body()
        #expect(ContinuousClock.now - start < .seconds(30))
        #expect(peakMiB() - before < 500)
        return result
    }

    // MARK: - Workflow files

    @Test("an alias bomb in a workflow file is refused with its line", arguments: [false, true])
    func workflowAliasBomb(asKey: Bool) throws {
        try Self.withFile(Self.workflowBomb(asKey: asKey), name: "bomb.workflow.yaml") { path in
            let found = Self.cheaply { Self.issues(WorkflowLoader.load(file: path)) }
            #expect(found.map(\.description) == ["\(path):4: YAML aliases (*a0) are not allowed here; write the value out in full"])
        }
    }

    @Test("YAML nested past 64 levels is refused with its line", arguments: [
        (65, false), (1000, false), (100_000, false), (65, true), (1000, true),
    ])
    func workflowTooDeep(depth: Int, block: Bool) throws {
        try Self.withFile(Self.deepWorkflow(depth: depth, block: block), name: "deep.workflow.yaml") { path in
            let found = Self.cheaply { Self.issues(WorkflowLoader.load(file: path)) }
            // Flow style opens every level on line 3; block style opens level n on line
            // n + 1, so the first refused, level 65, is on line 66.
            let line = block ? 66 : 3
            #expect(found.map(\.description) == ["\(path):\(line): YAML nested deeper than 64 levels"])
        }
    }

    @Test("YAML 60 levels deep still loads")
    func sixtyLevels() throws {
        for block in [false, true] {
            let outcome = WorkflowLoader.parse(Self.deepWorkflow(depth: 58, block: block), file: "w.yaml", defaultId: nil)
            guard case .valid = outcome else {
                Issue.record("did not load: \(Self.issues(outcome))")
                continue
            }
        }
    }

    @Test("one harmless alias is refused too, naming it; an unused anchor is fine")
    func harmlessAlias() throws {
        let withAlias = """
            id: reuse
            steps:
              - id: a
                exec: { argv: &cmd [echo, hi] }
              - id: b
                exec: { argv: *cmd }
            """
        #expect(Self.issues(WorkflowLoader.parse(withAlias, file: "w.yaml", defaultId: nil)).map(\.description)
            == ["w.yaml:6: YAML aliases (*cmd) are not allowed here; write the value out in full"])
        let anchorOnly = withAlias.replacingOccurrences(of: "*cmd", with: "[echo, hi]")
        guard case .valid = WorkflowLoader.parse(anchorOnly, file: "w.yaml", defaultId: nil) else {
            Issue.record("an unused anchor was refused: \(Self.issues(WorkflowLoader.parse(anchorOnly, file: "w.yaml", defaultId: nil)))")
            return
        }
    }

    @Test("a deeply nested expression in a workflow file is an issue, not a crash", arguments: [65, 100_000])
    func deepExpression(depth: Int) {
        let expression = String(repeating: "(", count: depth) + "input.x" + String(repeating: ")", count: depth)
        let text = "id: deep\nsteps:\n  - id: s\n    run: \"echo ${{ \(expression) }}\"\n"
        let found = Self.cheaply { Self.issues(WorkflowLoader.parse(text, file: "w.yaml", defaultId: nil)) }
        #expect(found.map(\.description) == ["w.yaml:4: steps[0](s).run: expression nested deeper than 64 levels"])
    }

    @Test("a syntax error is still Yams's to report")
    func syntaxError() {
        let found = Self.issues(WorkflowLoader.parse("id: x\nsteps: [\n", file: "w.yaml", defaultId: nil))
        #expect(found.count == 1)
        #expect(found.first?.message.hasPrefix("not valid YAML or JSON") == true)
    }

    // MARK: - Config files

    static func configError(_ path: String) -> String? {
        do {
            _ = try ConfigLoader.load(path: path)
            return nil
        } catch {
            return "\(error)"
        }
    }

    @Test("an alias bomb in a config file is refused with its line", arguments: [false, true])
    func configAliasBomb(asKey: Bool) throws {
        try Self.withFile("stateDir: x\n" + Self.aliasBomb(levels: 10, asKey: asKey), name: "skelm.config.yaml") { path in
            let error = Self.cheaply { Self.configError(path) }
            #expect(error == "\(path):3: YAML aliases (*a0) are not allowed here; write the value out in full")
        }
    }

    @Test("a config nested past 64 levels is refused", arguments: [65, 100_000])
    func configTooDeep(depth: Int) throws {
        let text = "server: " + String(repeating: "[", count: depth) + String(repeating: "]", count: depth) + "\n"
        try Self.withFile(text, name: "skelm.config.yaml") { path in
            let error = Self.cheaply { Self.configError(path) }
            #expect(error == "\(path):1: YAML nested deeper than 64 levels")
        }
    }

    @Test("a harmless alias in a config is refused, naming it")
    func configHarmlessAlias() throws {
        let text = """
            defaults:
              permissions:
                fsRead: &ro [/usr, /lib]
            permissionProfiles:
              build:
                fsRead: *ro
            """
        try Self.withFile(text, name: "skelm.config.yaml") { path in
            #expect(Self.configError(path) == "\(path):6: YAML aliases (*ro) are not allowed here; write the value out in full")
        }
        try Self.withFile(text.replacingOccurrences(of: "*ro", with: "[/usr, /lib]"), name: "skelm.config.yaml") { path in
            #expect(Self.configError(path) == nil)
        }
    }
}
