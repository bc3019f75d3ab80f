import Foundation
import Workflow
import Yams

/// `http` and `infer` steps: requests the control plane makes for the step.
extension NodeReader {
    mutating func http(_ n: Node, _ path: String, variables: Set<String>, ids: inout IdTable) -> StepKind? {
        guard let m = mapping(n, path, allowed: ["method", "url", "headers", "query", "body", "expectStatus", "responseType"]) else { return nil }
        guard let url = string(m["url"], "\(path).url") else {
            issue("\(path).url", n, "is required")
            return nil
        }
        use(url, path: "\(path).url", node: m["url"]!, variables: variables, ids: &ids)
        if (try? Template(url))?.expressions.isEmpty ?? false {
            // A literal URL is checked now; a templated one when the step runs.
            if let problem = HTTPURLRule.problem(url) { issue("\(path).url", m["url"], problem) }
        }
        var step = HTTPStep(url: url)
        if let node = m["method"] {
            if let text = string(node, "\(path).method"), let method = HTTPStep.Method(rawValue: text.uppercased()) {
                step.method = method
            } else {
                issue("\(path).method", node, "must be one of \(HTTPStep.Method.allCases.map(\.rawValue).joined(separator: ", "))")
            }
        }
        for (key, node) in [("headers", m["headers"]), ("query", m["query"])] {
            guard let node, let map = stringMap(node, "\(path).\(key)") else { continue }
            for (k, v) in map {
                use(v, path: "\(path).\(key).\(k)", node: node, variables: variables, ids: &ids)
                if key == "headers", !CredentialRules.isToken(k) { issue("\(path).headers.\(k)", node, "is not a valid header name") }
            }
            if key == "headers" { step.headers = map } else { step.query = map }
        }
        if let node = m["body"] { step.body = body(node, "\(path).body", variables: variables, ids: &ids) }
        if let node = m["expectStatus"] {
            let items = node.sequence ?? [node]
            var matches: [HTTPStep.StatusMatch] = []
            for item in items {
                if let text = item.string, let match = HTTPStep.StatusMatch(text) {
                    matches.append(match)
                } else {
                    issue("\(path).expectStatus", item, "must be a status (200), a class (\"2xx\") or a list of them")
                }
            }
            if !matches.isEmpty { step.expectStatus = matches }
        }
        if let node = m["responseType"] { step.responseType = choice(node, "\(path).responseType", as: HTTPStep.ResponseType.self) ?? .auto }
        return .http(step)
    }

    /// `{json: …}`, `{text: …}` or `{form: {…}}`.
    mutating func body(_ n: Node, _ path: String, variables: Set<String>, ids: inout IdTable) -> HTTPStep.Body? {
        guard let m = mapping(n, path, allowed: ["json", "text", "form"]), m.count == 1, let (key, node) = m.first else {
            if n.mapping != nil { issue(path, n, "needs exactly one of json, text or form") }
            return nil
        }
        switch key {
        case "json":
            let value = Self.json(node)
            collectTemplates(value, path: "\(path).json", node: node, variables: variables, ids: &ids)
            return .json(value)
        case "text":
            guard let text = string(node, "\(path).text") else { return nil }
            use(text, path: "\(path).text", node: node, variables: variables, ids: &ids)
            return .text(text)
        default:
            guard let form = stringMap(node, "\(path).form") else { return nil }
            for (k, v) in form { use(v, path: "\(path).form.\(k)", node: node, variables: variables, ids: &ids) }
            return .form(form)
        }
    }

    mutating func infer(_ n: Node, _ path: String, variables: Set<String>, ids: inout IdTable) -> StepKind? {
        guard let m = mapping(n, path, allowed: ["provider", "model", "messages", "prompt", "system", "temperature", "maxTokens", "responseFormat"]) else { return nil }
        guard let provider = string(m["provider"], "\(path).provider") else {
            issue("\(path).provider", n, "is required: a provider named in config (providers:)")
            return nil
        }
        var step = InferStep(provider: provider)
        step.model = m["model"].flatMap { string($0, "\(path).model") }
        for key in ["prompt", "system"] {
            guard let node = m[key], let text = string(node, "\(path).\(key)") else { continue }
            use(text, path: "\(path).\(key)", node: node, variables: variables, ids: &ids)
            if key == "prompt" { step.prompt = text } else { step.system = text }
        }
        if let node = m["messages"] {
            if let list = node.sequence {
                step.messages = list.enumerated().compactMap { i, item -> InferStep.Message? in
                    let mp = "\(path).messages[\(i)]"
                    guard let mm = mapping(item, mp, allowed: ["role", "content"]),
                          let role = choice(mm["role"], "\(mp).role", as: InferStep.Message.Role.self),
                          let content = string(mm["content"], "\(mp).content") else {
                        issue(mp, item, "needs a role (system, user or assistant) and a content")
                        return nil
                    }
                    use(content, path: "\(mp).content", node: mm["content"]!, variables: variables, ids: &ids)
                    return .init(role: role, content: content)
                }
                if list.isEmpty { issue("\(path).messages", node, "must have at least one message") }
            } else {
                issue("\(path).messages", node, "must be a list of {role, content}")
            }
        }
        if (step.messages == nil) == (step.prompt == nil) { issue(path, n, "needs exactly one of messages or prompt") }
        if step.messages != nil, step.system != nil { issue("\(path).system", m["system"], "goes with prompt; with messages, add a system message") }
        if let node = m["temperature"], let t = double(node, "\(path).temperature") {
            if (0...2).contains(t) { step.temperature = t } else { issue("\(path).temperature", node, "must be between 0 and 2") }
        }
        step.maxTokens = int(m["maxTokens"], "\(path).maxTokens", range: 1...1_000_000)
        if let node = m["responseFormat"] {
            let schema = Self.json(node)
            for problem in JSONSchema.problems(in: schema) {
                issue("\(path).responseFormat", node, problem.replacingOccurrences(of: "schema", with: "responseFormat schema", options: .anchored))
            }
            step.responseFormat = schema
        }
        return .infer(step)
    }
}
