import Foundation
import Workflow
import Yams

/// Turns a workflow file into a `WorkflowDefinition`, or into the full list of
/// what is wrong with it (every problem, with its key path and line) before
/// anything runs. YAML and JSON are read the same way: JSON is YAML.
public enum WorkflowLoader {
    public enum Outcome: Sendable {
        case valid(WorkflowDefinition)
        case invalid(id: String?, [WorkflowIssue])
    }

    public static func load(file: String) -> Outcome {
        guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
            return .invalid(id: nil, [WorkflowIssue(file: file, path: "", line: nil, message: "cannot read the file")])
        }
        return parse(text, file: file, defaultId: defaultId(file))
    }

    /// `hello.workflow.yaml` → `hello`.
    public static func defaultId(_ file: String) -> String {
        var name = URL(fileURLWithPath: file).lastPathComponent
        for suffix in [".yaml", ".yml", ".json"] where name.hasSuffix(suffix) { name.removeLast(suffix.count) }
        if name.hasSuffix(".workflow") { name.removeLast(".workflow".count) }
        return name
    }

    public static func parse(_ text: String, file: String, defaultId: String?) -> Outcome {
        if let refused = YAMLLimits.check(text) {
            return .invalid(id: nil, [WorkflowIssue(file: file, path: "", line: refused.line, message: refused.message)])
        }
        let root: Node?
        do { root = try Yams.compose(yaml: text) } catch {
            return .invalid(id: nil, [WorkflowIssue(file: file, path: "", line: nil, message: "not valid YAML or JSON: \(error)")])
        }
        guard let root else { return .invalid(id: nil, [WorkflowIssue(file: file, path: "", line: nil, message: "the file is empty")]) }
        var reader = NodeReader(file: file)
        var ids = IdTable()
        let def = reader.workflow(root, defaultId: defaultId, ids: &ids)
        if let def { reader.checkReferences(def, ids: ids) }
        guard let def, reader.issues.isEmpty else {
            let id = root.mapping?["id"]?.string ?? defaultId
            return .invalid(id: id, reader.issues.sorted { ($0.line ?? 0) < ($1.line ?? 0) })
        }
        return .valid(def)
    }
}

/// Step ids seen so far, with the node of each, for duplicate and reference checks.
struct IdTable {
    var nodes: [String: Node] = [:]
    /// For each expression-bearing place: where it is, what it reads, and which loop variables are in scope there.
    var uses: [(path: String, node: Node, source: String, variables: Set<String>)] = []
}

extension NodeReader {
    static let idPattern = try! NSRegularExpression(pattern: "^[A-Za-z_][A-Za-z0-9_-]{0,63}$")

    static func validId(_ id: String) -> Bool {
        idPattern.firstMatch(in: id, range: NSRange(id.startIndex..., in: id)) != nil
    }

    mutating func workflow(_ root: Node, defaultId: String?, ids: inout IdTable) -> WorkflowDefinition? {
        guard let m = mapping(root, "", allowed: ["id", "name", "description", "input", "output", "env", "timeout", "result", "steps", "permissions"]) else { return nil }
        let id = string(m["id"] ?? m["name"], m["id"] != nil ? "id" : "name") ?? defaultId ?? ""
        if !Self.validId(id) { issue("id", m["id"] ?? root, "'\(id)' is not a valid id (letters, digits, - and _, starting with a letter)") }
        let description = string(m["description"], "description")
        var input: JSONValue?, output: JSONValue?
        for key in ["input", "output"] {
            guard let n = m[key] else { continue }
            let schema = Self.json(n)
            for problem in JSONSchema.problems(in: schema) {
                issue(key, n, problem.replacingOccurrences(of: "schema", with: "\(key) schema", options: .anchored))
            }
            if key == "input" { input = schema } else { output = schema }
        }
        let env = stringMap(m["env"], "env") ?? [:]
        for (k, v) in env {
            use(v, path: "env.\(k)", node: m["env"]!, variables: [], ids: &ids, roots: ["input"])
        }
        let timeout = durationMs(m["timeout"], "timeout")
        var result: JSONValue?
        if let r = m["result"] {
            result = Self.json(r)
            collectTemplates(result!, path: "result", node: r, variables: [], ids: &ids)
        }
        guard let stepsNode = m["steps"] else {
            issue("steps", root, "is required: a workflow needs at least one step")
            return nil
        }
        let steps = stepList(stepsNode, "steps", variables: [], ids: &ids)
        if steps.isEmpty, stepsNode.sequence?.isEmpty ?? false { issue("steps", stepsNode, "must have at least one step") }
        var def = WorkflowDefinition(id: id, description: description, input: input, output: output, env: env,
                                     timeoutMs: timeout, result: result, steps: steps)
        if let p = m["permissions"] {
            let (set, profile) = permissions(p, "permissions", allowProfile: true)
            def.permissions = set
            def.permissionProfile = profile
        }
        return def
    }

    mutating func stepList(_ node: Node, _ path: String, variables: Set<String>, ids: inout IdTable) -> [Step] {
        guard let seq = node.sequence else {
            issue(path, node, "must be a list of steps")
            return []
        }
        return seq.enumerated().compactMap { step($0.element, "\(path)[\($0.offset)]", variables: variables, ids: &ids) }
    }

    static let kinds = ["exec", "run", "parallel", "forEach", "branch", "loop", "approval"]
    static let later = ["http", "agent", "infer", "mcp", "wait", "invoke"]

    mutating func step(_ node: Node, _ path: String, variables: Set<String>, ids: inout IdTable) -> Step? {
        let common: Set<String> = ["id", "name", "if", "retry", "timeout", "description", "permissions", "unrestricted"]
        guard let m = mapping(node, path, allowed: common.union(Self.kinds).union(Self.later)) else { return nil }
        guard let id = string(m["id"], "\(path).id") else {
            issue("\(path).id", node, "is required")
            return nil
        }
        let here = "\(path)(\(id))"
        if !Self.validId(id) {
            issue("\(path).id", m["id"], "'\(id)' is not a valid step id (letters, digits, - and _, starting with a letter)")
        } else if let first = ids.nodes[id] {
            issue("\(path).id", m["id"], "duplicate step id '\(id)' (first at line \(first.mark.map { "\($0.line)" } ?? "?"))")
        } else {
            ids.nodes[id] = m["id"]!
        }
        // The common fields are checked even when the kind is wrong: every problem, at once.
        var s = Step(id: id)
        if let c = m["if"] {
            s.if = string(c, "\(here).if")
            if let text = s.if { use(Template.condition(text), path: "\(here).if", node: c, variables: variables, ids: &ids) }
        }
        if let r = m["retry"] { s.retry = retry(r, "\(here).retry") }
        s.timeoutMs = durationMs(m["timeout"], "\(here).timeout")
        if let p = m["permissions"] { s.permissions = permissions(p, "\(here).permissions", allowProfile: false).0 }
        if let u = m["unrestricted"] {
            if u.tagName == .bool { s.unrestricted = u.bool } else { issue("\(here).unrestricted", u, "must be true or false") }
        }
        let present = Self.kinds.filter { m[$0] != nil }
        for kind in Self.later where m[kind] != nil {
            issue("\(here).\(kind)", m[kind], "'\(kind)' steps are not supported by this gateway yet")
        }
        if present.count != 1 {
            if Self.later.allSatisfy({ m[$0] == nil }) {
                issue(here, node, present.isEmpty ? "a step needs exactly one kind: \(Self.kinds.joined(separator: ", "))"
                                                  : "a step has exactly one kind, found \(present.joined(separator: " and "))")
            }
            return nil
        }

        switch present[0] {
        case "exec": s.exec = exec(m["exec"]!, "\(here).exec", variables: variables, ids: &ids)
        case "run":
            // `run: <shell script>`: the short form of exec.script.
            if let script = string(m["run"], "\(here).run") {
                use(script, path: "\(here).run", node: m["run"]!, variables: variables, ids: &ids)
                s.exec = ExecStep(script: script)
            }
        case "parallel":
            let n = m["parallel"]!
            let list = n.mapping.flatMap { _ in mapping(n, "\(here).parallel", allowed: ["steps"])?["steps"] } ?? n
            s.parallel = ParallelStep(steps: stepList(list, "\(here).parallel.steps", variables: variables, ids: &ids))
        case "forEach":
            guard let f = mapping(m["forEach"]!, "\(here).forEach", allowed: ["items", "concurrency", "steps", "as"]) else { return nil }
            guard let itemsNode = f["items"] else {
                issue("\(here).forEach.items", m["forEach"], "is required")
                return nil
            }
            let items = Self.json(itemsNode)
            switch items {
            case .array: collectTemplates(items, path: "\(here).forEach.items", node: itemsNode, variables: variables, ids: &ids)
            case let .string(t): use(t, path: "\(here).forEach.items", node: itemsNode, variables: variables, ids: &ids)
            default: issue("\(here).forEach.items", itemsNode, "must be a list or a ${{ }} expression that gives one")
            }
            let concurrency = int(f["concurrency"], "\(here).forEach.concurrency", range: 1...64) ?? 1
            let inner = variables.union(["item", "index"])
            let steps = f["steps"].map { stepList($0, "\(here).forEach.steps", variables: inner, ids: &ids) } ?? []
            if f["steps"] == nil { issue("\(here).forEach.steps", m["forEach"], "is required") }
            s.forEach = ForEachStep(items: items, concurrency: concurrency, steps: steps)
        case "branch":
            guard let b = mapping(m["branch"]!, "\(here).branch", allowed: ["cases", "otherwise"]) else { return nil }
            var cases: [BranchStep.Case] = []
            if let list = b["cases"]?.sequence {
                for (i, c) in list.enumerated() {
                    let cp = "\(here).branch.cases[\(i)]"
                    guard let cm = mapping(c, cp, allowed: ["if", "steps"]) else { continue }
                    guard let cond = string(cm["if"], "\(cp).if") else {
                        issue("\(cp).if", c, "is required")
                        continue
                    }
                    use(Template.condition(cond), path: "\(cp).if", node: cm["if"]!, variables: variables, ids: &ids)
                    let steps = cm["steps"].map { stepList($0, "\(cp).steps", variables: variables, ids: &ids) } ?? []
                    cases.append(.init(if: cond, steps: steps))
                }
            } else {
                issue("\(here).branch.cases", b["cases"] ?? m["branch"], "must be a list of {if, steps}")
            }
            let otherwise = b["otherwise"].map { stepList($0, "\(here).branch.otherwise", variables: variables, ids: &ids) }
            s.branch = BranchStep(cases: cases, otherwise: otherwise)
        case "approval":
            // A run parks at an approval and resumes from its checkpoint: checkpoints are top-level steps.
            if path.contains(")") {
                issue("\(here).approval", m["approval"], "an approval step must be at the top level of steps")
            }
            guard let a = mapping(m["approval"]!, "\(here).approval", allowed: ["message", "timeout", "onTimeout"]) else { return nil }
            guard let message = string(a["message"], "\(here).approval.message") else {
                issue("\(here).approval.message", m["approval"], "is required: what the approver is asked")
                return nil
            }
            use(message, path: "\(here).approval.message", node: a["message"]!, variables: variables, ids: &ids)
            let onTimeout = string(a["onTimeout"], "\(here).approval.onTimeout") ?? "fail"
            if !["fail", "deny", "approve"].contains(onTimeout) {
                issue("\(here).approval.onTimeout", a["onTimeout"], "must be fail, deny or approve")
            }
            s.approval = ApprovalStep(message: message, timeoutMs: durationMs(a["timeout"], "\(here).approval.timeout"), onTimeout: onTimeout)
        default: // loop
            guard let l = mapping(m["loop"]!, "\(here).loop", allowed: ["until", "max", "steps"]) else { return nil }
            let inner = variables.union(["iteration"])
            let steps = l["steps"].map { stepList($0, "\(here).loop.steps", variables: inner, ids: &ids) } ?? []
            if l["steps"] == nil { issue("\(here).loop.steps", m["loop"], "is required") }
            let until = string(l["until"], "\(here).loop.until")
            if let until { use(Template.condition(until), path: "\(here).loop.until", node: l["until"]!, variables: inner, ids: &ids) }
            guard let max = int(l["max"], "\(here).loop.max", range: 1...10_000) else {
                if l["max"] == nil { issue("\(here).loop.max", m["loop"], "is required: a loop must be bounded") }
                return nil
            }
            s.loop = LoopStep(until: until, max: max, steps: steps)
        }
        return s
    }

    mutating func exec(_ node: Node, _ path: String, variables: Set<String>, ids: inout IdTable) -> ExecStep? {
        guard let m = mapping(node, path, allowed: ["argv", "command", "script", "interpreter", "env", "cwd", "stdin"]) else { return nil }
        var e = ExecStep()
        e.argv = strings(m["argv"] ?? m["command"], "\(path).argv")
        e.script = string(m["script"], "\(path).script")
        if let i = m["interpreter"] {
            e.interpreter = i.sequence != nil ? strings(i, "\(path).interpreter") : string(i, "\(path).interpreter").map { [$0] }
        }
        e.env = stringMap(m["env"], "\(path).env") ?? [:]
        e.cwd = string(m["cwd"], "\(path).cwd")
        e.stdin = string(m["stdin"], "\(path).stdin")
        if (e.argv == nil) == (e.script == nil) {
            issue(path, node, "needs exactly one of argv (a list: program and arguments) or script")
        }
        if let argv = e.argv, argv.isEmpty { issue("\(path).argv", m["argv"], "must name a program") }
        for (k, _) in e.env where k.hasPrefix("LD_") || k == "PATH" {
            issue("\(path).env.\(k)", m["env"], "may not be set by a step (the PATH is fixed; loader variables are refused)")
        }
        var texts: [(String, String)] = (e.argv ?? []).enumerated().map { ("\(path).argv[\($0.offset)]", $0.element) }
        // Secrets only in env: never in argv (visible in /proc), stdin or a script that could echo them.
        for (k, v) in e.env {
            use(v, path: "\(path).env.\(k)", node: m["env"] ?? node, variables: variables, ids: &ids,
                roots: ["input", "env", "steps", "secrets"])
        }
        if let s = e.script { texts.append(("\(path).script", s)) }
        if let s = e.stdin { texts.append(("\(path).stdin", s)) }
        if let s = e.cwd { texts.append(("\(path).cwd", s)) }
        for (p, t) in texts { use(t, path: p, node: node, variables: variables, ids: &ids) }
        return e
    }

    /// `permissions:` of a workflow (which may name a `profile`) or a step.
    mutating func permissions(_ node: Node, _ path: String, allowProfile: Bool) -> (PermissionSet?, String?) {
        var allowed = PermissionConfig.keys
        if allowProfile { allowed.insert("profile") }
        guard let m = mapping(node, path, allowed: allowed) else { return (nil, nil) }
        var set = PermissionSet()
        set.allowedExecutables = strings(m["allowedExecutables"], "\(path).allowedExecutables")
        set.fsRead = strings(m["fsRead"], "\(path).fsRead")
        set.fsWrite = strings(m["fsWrite"], "\(path).fsWrite")
        for (key, list) in [("fsRead", set.fsRead), ("fsWrite", set.fsWrite)] {
            for p in list ?? [] where !p.hasPrefix("/") { issue("\(path).\(key)", m[key], "'\(p)' must be an absolute path") }
        }
        if let n = m["networkEgress"], let e = mapping(n, "\(path).networkEgress", allowed: ["allowHosts"]) {
            set.allowHosts = strings(e["allowHosts"], "\(path).networkEgress.allowHosts")
        }
        set.allowedMcpServers = strings(m["allowedMcpServers"], "\(path).allowedMcpServers")
        set.allowedTools = strings(m["allowedTools"], "\(path).allowedTools")
        set.allowedSkills = strings(m["allowedSkills"], "\(path).allowedSkills")
        set.allowedAgents = strings(m["allowedAgents"], "\(path).allowedAgents")
        return (set, string(m["profile"], "\(path).profile"))
    }

    mutating func retry(_ node: Node, _ path: String) -> RetryPolicy? {
        if node.tagName == .int { return int(node, "\(path)", range: 0...100).map { RetryPolicy(max: $0) } }
        guard let m = mapping(node, path, allowed: ["max", "backoff", "factor"]) else { return nil }
        guard let max = int(m["max"], "\(path).max", range: 0...100) else {
            if m["max"] == nil { issue("\(path).max", node, "is required") }
            return nil
        }
        var r = RetryPolicy(max: max)
        if let b = m["backoff"] { r.backoffMs = durationMs(b, "\(path).backoff") ?? r.backoffMs }
        if let f = double(m["factor"], "\(path).factor") {
            if f < 1 || f > 10 { issue("\(path).factor", m["factor"], "must be between 1 and 10") } else { r.factor = f }
        }
        return r
    }

    /// Parses a template now (a syntax error is a load error) and remembers what it reads.
    mutating func use(_ text: String, path: String, node: Node, variables: Set<String>, ids: inout IdTable,
                      roots: Set<String> = ["input", "env", "steps"]) {
        do {
            let t = try Template(text)
            for e in t.expressions {
                let allowed = roots.union(variables)
                for r in e.references.roots where !allowed.contains(r) {
                    let hint = r == "secrets" ? " (secrets may only be used in an exec step's env)" : ""
                    issue(path, node, "'\(r)' is not defined here; use one of \(allowed.sorted().joined(separator: ", "))\(hint)")
                }
            }
            ids.uses.append((path, node, text, variables))
        } catch {
            issue(path, node, error.message)
        }
    }

    mutating func collectTemplates(_ value: JSONValue, path: String, node: Node, variables: Set<String>, ids: inout IdTable) {
        switch value {
        case let .string(s): use(s, path: path, node: node, variables: variables, ids: &ids)
        case let .array(a): for (i, v) in a.enumerated() { collectTemplates(v, path: "\(path)[\(i)]", node: node, variables: variables, ids: &ids) }
        case let .object(o): for (k, v) in o { collectTemplates(v, path: "\(path).\(k)", node: node, variables: variables, ids: &ids) }
        default: break
        }
    }

    /// Every `steps.<id>` must name a step of this workflow.
    mutating func checkReferences(_ def: WorkflowDefinition, ids: IdTable) {
        for use in ids.uses {
            guard let t = try? Template(use.source) else { continue }
            for e in t.expressions {
                for id in e.references.steps where ids.nodes[id] == nil {
                    issue(use.path, use.node, "steps.\(id) does not name a step of this workflow")
                }
            }
        }
    }
}
