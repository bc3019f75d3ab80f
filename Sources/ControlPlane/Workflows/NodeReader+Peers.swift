import Foundation
import Workflow
import Yams

/// `agent` and `mcp` steps: they name peers config registers (checked when a
/// run is submitted, since a reload can change the registry).
extension NodeReader {
    mutating func agent(_ n: Node, _ path: String, variables: Set<String>, ids: inout IdTable) -> StepKind? {
        guard let m = mapping(n, path, allowed: ["agent", "prompt", "output", "maxTurns", "onPermission", "mcpServers", "skills", "sessionKey"]) else { return nil }
        guard let agent = string(m["agent"], "\(path).agent") else {
            issue("\(path).agent", n, "is required: an agent id under agents: in config")
            return nil
        }
        guard let prompt = string(m["prompt"], "\(path).prompt") else {
            issue("\(path).prompt", n, "is required")
            return nil
        }
        use(prompt, path: "\(path).prompt", node: m["prompt"]!, variables: variables, ids: &ids)
        var step = AgentStep(agent: agent, prompt: prompt)
        if let node = m["output"] {
            let schema = Self.json(node)
            for problem in JSONSchema.problems(in: schema) {
                issue("\(path).output", node, problem.replacingOccurrences(of: "schema", with: "output schema", options: .anchored))
            }
            step.output = schema
            step.maxTurns = 3
        }
        if let turns = int(m["maxTurns"], "\(path).maxTurns", range: 1...20) {
            step.maxTurns = turns
            if step.output == nil, turns > 1 { issue("\(path).maxTurns", m["maxTurns"], "goes with output: without a schema the first answer is the output") }
        }
        if let node = m["onPermission"] { step.onPermission = choice(node, "\(path).onPermission", as: AgentStep.OnPermission.self) ?? .policy }
        for key in ["mcpServers", "skills"] {
            guard let node = m[key], let names = strings(node, "\(path).\(key)") else { continue }
            if Set(names).count != names.count { issue("\(path).\(key)", node, "names an entry twice") }
            if key == "mcpServers" { step.mcpServers = names } else { step.skills = names }
        }
        if let node = m["sessionKey"], let key = string(node, "\(path).sessionKey") {
            use(key, path: "\(path).sessionKey", node: node, variables: variables, ids: &ids)
            step.sessionKey = key
        }
        return .agent(step)
    }

    mutating func mcp(_ n: Node, _ path: String, variables: Set<String>, ids: inout IdTable) -> StepKind? {
        guard let m = mapping(n, path, allowed: ["server", "tool", "arguments"]) else { return nil }
        guard let server = string(m["server"], "\(path).server"), let tool = string(m["tool"], "\(path).tool") else {
            issue(path, n, "needs a server (an id under mcpServers: in config) and a tool")
            return nil
        }
        var arguments: JSONValue = .object([:])
        if let node = m["arguments"] {
            arguments = Self.json(node)
            guard case .object = arguments else {
                issue("\(path).arguments", node, "must be a mapping: the tool's arguments by name")
                return nil
            }
            collectTemplates(arguments, path: "\(path).arguments", node: node, variables: variables, ids: &ids)
        }
        return .mcp(MCPStep(server: server, tool: tool, arguments: arguments))
    }
}
