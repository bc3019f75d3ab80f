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
        guard let m = mapping(root, "", allowed: ["id", "name", "description", "input", "output", "env", "timeout", "result", "steps", "permissions", "inject", "triggers"]) else { return nil }
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
        workflowEnv = env
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
        if let i = m["inject"] { def.inject = injections(i, "inject") }
        if let t = m["triggers"] { def.triggers = triggers(t, "triggers") }
        return def
    }

    mutating func stepList(_ node: Node, _ path: String, variables: Set<String>, ids: inout IdTable) -> [Step] {
        guard let seq = node.sequence else {
            issue(path, node, "must be a list of steps")
            return []
        }
        return seq.enumerated().compactMap { step($0.element, "\(path)[\($0.offset)]", variables: variables, ids: &ids) }
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
