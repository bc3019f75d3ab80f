/// What a step does: exactly one kind, with what that kind needs. The loader,
/// the policy resolver, the control plane's checks and the interpreter each
/// switch over it exhaustively, so a kind cannot be added to one and forgotten
/// in another.
public enum StepKind: Sendable, Equatable {
    /// Runs a program in the sandbox.
    case exec(ExecStep)
    /// Runs its steps at once.
    case parallel(ParallelStep)
    /// Runs its steps once per item.
    case forEach(ForEachStep)
    /// Runs the steps of the first case that holds.
    case branch(BranchStep)
    /// Runs its steps until a condition holds, a bounded number of times.
    case loop(LoopStep)
    /// Parks the run until a person approves or denies it.
    case approval(ApprovalStep)
    /// Parks the run until its output is posted to `POST /runs/:id/resume`.
    case wait(WaitStep)
    /// Runs another workflow as a child run and takes its output.
    case invoke(InvokeStep)
    /// One HTTP request, made by the control plane.
    case http(HTTPStep)
    /// One chat completion against a configured provider.
    case infer(InferStep)
    /// Prompts a coding agent over the Agent Client Protocol.
    case agent(AgentStep)
    /// Calls one tool of an MCP server.
    case mcp(MCPStep)

    /// The kinds' names, as workflow files and events spell them.
    public enum Name: String, Codable, Sendable, CaseIterable {
        case exec, parallel, forEach, branch, loop, approval, wait, invoke, http, infer, agent, mcp
    }

    public var name: Name {
        switch self {
        case .exec: .exec
        case .parallel: .parallel
        case .forEach: .forEach
        case .branch: .branch
        case .loop: .loop
        case .approval: .approval
        case .wait: .wait
        case .invoke: .invoke
        case .http: .http
        case .infer: .infer
        case .agent: .agent
        case .mcp: .mcp
        }
    }

    /// Kinds that end the segment and wait, with no worker held, for something
    /// outside the run: a decision, a posted output, a child run.
    public var parks: Bool {
        switch self {
        case .approval, .wait, .invoke: true
        case .exec, .parallel, .forEach, .branch, .loop, .http, .infer, .agent, .mcp: false
        }
    }

    /// Kinds that hold other steps.
    public var isContainer: Bool {
        switch self {
        case .parallel, .forEach, .branch, .loop: true
        case .exec, .approval, .wait, .invoke, .http, .infer, .agent, .mcp: false
        }
    }
}

/// Encoded as `{"<kind>": payload}`: one key, the kind's name.
extension StepKind: Codable {
    private struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(_ name: Name) { stringValue = name.rawValue }
        init?(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: Key.self)
        guard c.allKeys.count == 1, let key = c.allKeys.first, let name = Name(rawValue: key.stringValue) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath,
                                                    debugDescription: "a step kind is one key naming one of \(Name.allCases.map(\.rawValue))"))
        }
        switch name {
        case .exec: self = .exec(try c.decode(ExecStep.self, forKey: key))
        case .parallel: self = .parallel(try c.decode(ParallelStep.self, forKey: key))
        case .forEach: self = .forEach(try c.decode(ForEachStep.self, forKey: key))
        case .branch: self = .branch(try c.decode(BranchStep.self, forKey: key))
        case .loop: self = .loop(try c.decode(LoopStep.self, forKey: key))
        case .approval: self = .approval(try c.decode(ApprovalStep.self, forKey: key))
        case .wait: self = .wait(try c.decode(WaitStep.self, forKey: key))
        case .invoke: self = .invoke(try c.decode(InvokeStep.self, forKey: key))
        case .http: self = .http(try c.decode(HTTPStep.self, forKey: key))
        case .infer: self = .infer(try c.decode(InferStep.self, forKey: key))
        case .agent: self = .agent(try c.decode(AgentStep.self, forKey: key))
        case .mcp: self = .mcp(try c.decode(MCPStep.self, forKey: key))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: Key.self)
        let key = Key(name)
        switch self {
        case let .exec(p): try c.encode(p, forKey: key)
        case let .parallel(p): try c.encode(p, forKey: key)
        case let .forEach(p): try c.encode(p, forKey: key)
        case let .branch(p): try c.encode(p, forKey: key)
        case let .loop(p): try c.encode(p, forKey: key)
        case let .approval(p): try c.encode(p, forKey: key)
        case let .wait(p): try c.encode(p, forKey: key)
        case let .invoke(p): try c.encode(p, forKey: key)
        case let .http(p): try c.encode(p, forKey: key)
        case let .infer(p): try c.encode(p, forKey: key)
        case let .agent(p): try c.encode(p, forKey: key)
        case let .mcp(p): try c.encode(p, forKey: key)
        }
    }
}
