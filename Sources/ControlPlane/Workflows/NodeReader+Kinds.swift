import Foundation
import Workflow
import Yams

/// The kinds that do one thing (run a program, park, make a request): each
/// read whole, every field checked, every template parsed now.
extension NodeReader {
    mutating func exec(_ node: Node, _ path: String, variables: Set<String>, ids: inout IdTable) -> ExecStep? {
        guard let m = mapping(node, path, allowed: ["argv", "command", "script", "interpreter", "env", "cwd", "stdin", "allowInterpolation"]) else { return nil }
        var e = ExecStep()
        e.argv = strings(m["argv"] ?? m["command"], "\(path).argv")
        e.script = string(m["script"], "\(path).script")
        if let i = m["interpreter"] {
            e.interpreter = i.sequence != nil ? strings(i, "\(path).interpreter") : string(i, "\(path).interpreter").map { [$0] }
        }
        e.env = stringMap(m["env"], "\(path).env") ?? [:]
        e.cwd = string(m["cwd"], "\(path).cwd")
        e.stdin = string(m["stdin"], "\(path).stdin")
        e.allowInterpolation = bool(m["allowInterpolation"], "\(path).allowInterpolation") ?? false
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

    mutating func approval(_ n: Node, _ path: String, variables: Set<String>, ids: inout IdTable) -> StepKind? {
        guard let a = mapping(n, path, allowed: ["message", "timeout", "onTimeout"]) else { return nil }
        guard let message = string(a["message"], "\(path).message") else {
            issue("\(path).message", n, "is required: what the approver is asked")
            return nil
        }
        use(message, path: "\(path).message", node: a["message"]!, variables: variables, ids: &ids)
        let onTimeout = a["onTimeout"].map { choice($0, "\(path).onTimeout", as: ApprovalStep.OnTimeout.self) } ?? .fail
        return .approval(ApprovalStep(message: message, timeoutMs: durationMs(a["timeout"], "\(path).timeout"), onTimeout: onTimeout ?? .fail))
    }

    mutating func wait(_ n: Node, _ path: String, variables: Set<String>, ids: inout IdTable) -> StepKind? {
        // `wait: {}` and a bare `wait:` both mean: any output, no timeout.
        let w = n.tagName == .null ? [:] : mapping(n, path, allowed: ["message", "output", "timeout", "onTimeout", "timeoutOutput"])
        guard let w else { return nil }
        var step = WaitStep()
        if let node = w["message"], let message = string(node, "\(path).message") {
            use(message, path: "\(path).message", node: node, variables: variables, ids: &ids)
            step.message = message
        }
        if let node = w["output"] {
            let schema = Self.json(node)
            for problem in JSONSchema.problems(in: schema) {
                issue("\(path).output", node, problem.replacingOccurrences(of: "schema", with: "output schema", options: .anchored))
            }
            step.output = schema
        }
        step.timeoutMs = durationMs(w["timeout"], "\(path).timeout")
        step.onTimeout = w["onTimeout"].flatMap { choice($0, "\(path).onTimeout", as: WaitStep.OnTimeout.self) } ?? .fail
        if let node = w["timeoutOutput"] {
            let value = Self.json(node)
            if step.onTimeout != .resume { issue("\(path).timeoutOutput", node, "applies only with onTimeout: resume") }
            if let schema = step.output {
                for v in JSONSchema(schema).validate(value, root: "timeoutOutput") {
                    issue("\(path).timeoutOutput", node, "does not satisfy the output schema: \(v)")
                }
            }
            step.timeoutOutput = value
        }
        if w["onTimeout"] != nil, step.timeoutMs == nil { issue("\(path).onTimeout", w["onTimeout"], "needs a timeout") }
        return .wait(step)
    }

    mutating func invoke(_ n: Node, _ path: String, variables: Set<String>, ids: inout IdTable) -> StepKind? {
        // `invoke: child` is the short form of `invoke: {workflow: child}`.
        if n.mapping == nil, let id = string(n, path) {
            if !Self.validId(id) { issue(path, n, "'\(id)' is not a workflow id") }
            return .invoke(InvokeStep(workflow: id))
        }
        guard let m = mapping(n, path, allowed: ["workflow", "input"]) else { return nil }
        guard let id = string(m["workflow"], "\(path).workflow") else {
            issue("\(path).workflow", n, "is required: the id of the workflow to run")
            return nil
        }
        if !Self.validId(id) { issue("\(path).workflow", m["workflow"], "'\(id)' is not a workflow id") }
        var input: JSONValue = .object([:])
        if let node = m["input"] {
            input = Self.json(node)
            collectTemplates(input, path: "\(path).input", node: node, variables: variables, ids: &ids)
        }
        return .invoke(InvokeStep(workflow: id, input: input))
    }

    /// `inject:` of a workflow: credentials by host, never by value.
    mutating func injections(_ node: Node, _ path: String) -> [CredentialInjection] {
        guard let list = node.sequence else {
            issue(path, node, "must be a list of {host, header, secret, format}")
            return []
        }
        return list.enumerated().compactMap { i, n in injection(n, "\(path)[\(i)]") }
    }

    mutating func injection(_ node: Node, _ path: String) -> CredentialInjection? {
        guard let m = mapping(node, path, allowed: ["host", "header", "secret", "format"]) else { return nil }
        let host = string(m["host"], "\(path).host")
        let secret = string(m["secret"], "\(path).secret")
        if host == nil { issue("\(path).host", node, "is required") }
        if secret == nil { issue("\(path).secret", node, "is required: the name of the secret whose value is sent") }
        var out = CredentialInjection(host: host ?? "", secret: secret ?? "")
        if let header = m["header"].flatMap({ string($0, "\(path).header") }) { out.header = header }
        if let format = m["format"].flatMap({ string($0, "\(path).format") }) { out.format = format }
        for problem in CredentialRules.problems(out) { issue(path, node, problem) }
        return host == nil || secret == nil ? nil : out
    }
}
