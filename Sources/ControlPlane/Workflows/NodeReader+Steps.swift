import Foundation
import Workflow
import Yams

/// A step's common fields and its kind; the containers' kinds, whose steps
/// are read recursively. The other kinds are in NodeReader+Kinds.swift.
extension NodeReader {
    /// Kinds a later version of the gateway adds: named, so the error says so.
    static let later: [String] = []
    /// `run:` is the short form of `exec.script`.
    static let kindKeys = StepKind.Name.allCases.map(\.rawValue) + ["run"]

    mutating func step(_ node: Node, _ path: String, variables: Set<String>, ids: inout IdTable) -> Step? {
        let common: Set<String> = ["id", "name", "if", "retry", "timeout", "description", "permissions", "unrestricted", "idempotent"]
        guard let m = mapping(node, path, allowed: common.union(Self.kindKeys).union(Self.later)) else { return nil }
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
        var condition: String?
        if let c = m["if"] {
            condition = string(c, "\(here).if")
            if let text = condition { use(Template.condition(text), path: "\(here).if", node: c, variables: variables, ids: &ids) }
        }
        let retryPolicy = m["retry"].flatMap { retry($0, "\(here).retry") }
        let timeout = durationMs(m["timeout"], "\(here).timeout")
        let stepPermissions = m["permissions"].flatMap { permissions($0, "\(here).permissions", allowProfile: false).0 }
        var unrestricted: Bool?, idempotent: Bool?
        for (key, value) in [("unrestricted", m["unrestricted"]), ("idempotent", m["idempotent"])] {
            guard let value else { continue }
            guard value.tagName == .bool else {
                issue("\(here).\(key)", value, "must be true or false")
                continue
            }
            if key == "unrestricted" { unrestricted = value.bool } else { idempotent = value.bool }
        }
        let present = Self.kindKeys.filter { m[$0] != nil }
        for kind in Self.later where m[kind] != nil {
            issue("\(here).\(kind)", m[kind], "'\(kind)' steps are not supported by this gateway yet")
        }
        guard present.count == 1 else {
            if Self.later.allSatisfy({ m[$0] == nil }) {
                let names = StepKind.Name.allCases.map(\.rawValue).joined(separator: ", ")
                issue(here, node, present.isEmpty ? "a step needs exactly one kind: \(names)"
                                                  : "a step has exactly one kind, found \(present.joined(separator: " and "))")
            }
            return nil
        }
        let key = present[0]
        let body = m[key]!
        let kind: StepKind?
        if key == "run" {
            // `run: <shell script>`: the short form of exec.script.
            kind = string(body, "\(here).run").map { script in
                use(script, path: "\(here).run", node: body, variables: variables, ids: &ids)
                return .exec(ExecStep(script: script))
            }
        } else {
            switch StepKind.Name(rawValue: key)! {
            case .exec: kind = exec(body, "\(here).exec", variables: variables, ids: &ids).map(StepKind.exec)
            case .parallel: kind = parallel(body, "\(here).parallel", variables: variables, ids: &ids)
            case .forEach: kind = forEach(body, "\(here).forEach", variables: variables, ids: &ids)
            case .branch: kind = branch(body, "\(here).branch", variables: variables, ids: &ids)
            case .loop: kind = loop(body, "\(here).loop", variables: variables, ids: &ids)
            case .approval: kind = approval(body, "\(here).approval", variables: variables, ids: &ids)
            case .wait: kind = wait(body, "\(here).wait", variables: variables, ids: &ids)
            case .invoke: kind = invoke(body, "\(here).invoke", variables: variables, ids: &ids)
            case .http: kind = http(body, "\(here).http", variables: variables, ids: &ids)
            case .infer: kind = infer(body, "\(here).infer", variables: variables, ids: &ids)
            case .agent: kind = agent(body, "\(here).agent", variables: variables, ids: &ids)
            case .mcp: kind = mcp(body, "\(here).mcp", variables: variables, ids: &ids)
            }
        }
        guard let kind else { return nil }
        if kind.parks, retryPolicy != nil {
            issue("\(here).retry", m["retry"], "a \(kind.name.rawValue) step does not retry: it waits for a decision, an output or a child run")
        }
        if case let .exec(e) = kind, !e.allowInterpolation {
            for finding in ScriptInjection.findings(script: e.script, argv: e.argv, interpreter: e.interpreter, stdin: e.stdin,
                                                    untrustedEnv: ScriptInjection.untrustedEnvNames(in: workflowEnv)) {
                issue("\(here).\(key == "run" ? "run" : "exec.\(finding.field)")", body, finding.message)
            }
        }
        var s = Step(id: id, if: condition, retry: retryPolicy, timeoutMs: timeout, kind)
        s.permissions = stepPermissions
        s.unrestricted = unrestricted
        s.idempotent = idempotent
        return s
    }

    mutating func parallel(_ n: Node, _ path: String, variables: Set<String>, ids: inout IdTable) -> StepKind? {
        let list = n.mapping.flatMap { _ in mapping(n, path, allowed: ["steps"])?["steps"] } ?? n
        return .parallel(ParallelStep(steps: stepList(list, "\(path).steps", variables: variables, ids: &ids)))
    }

    mutating func forEach(_ n: Node, _ path: String, variables: Set<String>, ids: inout IdTable) -> StepKind? {
        guard let f = mapping(n, path, allowed: ["items", "concurrency", "steps", "as"]) else { return nil }
        guard let itemsNode = f["items"] else {
            issue("\(path).items", n, "is required")
            return nil
        }
        let items = Self.json(itemsNode)
        switch items {
        case .array: collectTemplates(items, path: "\(path).items", node: itemsNode, variables: variables, ids: &ids)
        case let .string(t): use(t, path: "\(path).items", node: itemsNode, variables: variables, ids: &ids)
        default: issue("\(path).items", itemsNode, "must be a list or a ${{ }} expression that gives one")
        }
        let concurrency = int(f["concurrency"], "\(path).concurrency", range: 1...64) ?? 1
        let inner = variables.union(["item", "index"])
        let steps = f["steps"].map { stepList($0, "\(path).steps", variables: inner, ids: &ids) } ?? []
        if f["steps"] == nil { issue("\(path).steps", n, "is required") }
        return .forEach(ForEachStep(items: items, concurrency: concurrency, steps: steps))
    }

    mutating func branch(_ n: Node, _ path: String, variables: Set<String>, ids: inout IdTable) -> StepKind? {
        guard let b = mapping(n, path, allowed: ["cases", "otherwise"]) else { return nil }
        var cases: [BranchStep.Case] = []
        if let list = b["cases"]?.sequence {
            for (i, c) in list.enumerated() {
                let cp = "\(path).cases[\(i)]"
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
            issue("\(path).cases", b["cases"] ?? n, "must be a list of {if, steps}")
        }
        let otherwise = b["otherwise"].map { stepList($0, "\(path).otherwise", variables: variables, ids: &ids) }
        return .branch(BranchStep(cases: cases, otherwise: otherwise))
    }

    mutating func loop(_ n: Node, _ path: String, variables: Set<String>, ids: inout IdTable) -> StepKind? {
        guard let l = mapping(n, path, allowed: ["until", "max", "steps"]) else { return nil }
        let inner = variables.union(["iteration"])
        let steps = l["steps"].map { stepList($0, "\(path).steps", variables: inner, ids: &ids) } ?? []
        if l["steps"] == nil { issue("\(path).steps", n, "is required") }
        let until = string(l["until"], "\(path).until")
        if let until { use(Template.condition(until), path: "\(path).until", node: l["until"]!, variables: inner, ids: &ids) }
        guard let max = int(l["max"], "\(path).max", range: 1...10_000) else {
            if l["max"] == nil { issue("\(path).max", n, "is required: a loop must be bounded") }
            return nil
        }
        return .loop(LoopStep(until: until, max: max, steps: steps))
    }
}
