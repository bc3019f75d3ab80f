import Foundation
import Wire
import Workflow

/// `infer` steps: the messages are evaluated here; the control plane asks the
/// provider (streaming its tokens into the run's events) and hands back the
/// whole reply, which is checked here against the step's response format.
extension Interpreter {
    func runInfer(_ infer: InferStep, step: Step, path: String, frame: Frame, deadline: ContinuousClock.Instant?) async throws -> Outcome {
        let policy = spec.policies[step.id] ?? StepPolicy()
        if let denied = policy.denied { throw deny(path, denied) }
        let scope = frame.scope(input: spec.input, env: env)
        var messages: [InferStep.Message] = []
        do {
            if let list = infer.messages {
                for m in list { messages.append(.init(role: m.role, content: try Template.string(m.content, in: scope))) }
            } else {
                if let system = infer.system { messages.append(.init(role: .system, content: try Template.string(system, in: scope))) }
                messages.append(.init(role: .user, content: try Template.string(infer.prompt ?? "", in: scope)))
            }
        } catch {
            throw fail(path, .expressionError, error.message)
        }
        let reply: InferComplete.Result
        do {
            reply = try await calls.complete(InferComplete.Params(jobId: spec.jobId, step: path, messages: messages), timeLeft(step, deadline))
        } catch let e as RPCError {
            if e.code == RPCError.notAllowed {
                throw StepFailure(.permissionDenied, step: path, message: e.message, details: ["dimension": "networkEgress", "value": infer.provider])
            }
            throw fail(path, .inferFailed, e.message)
        }
        let usage: JSONValue = ["promptTokens": .number(Double(reply.usage.promptTokens)),
                                "completionTokens": .number(Double(reply.usage.completionTokens))]
        var details: [String: JSONValue] = ["usage": usage, "model": .string(reply.model)]
        if let reason = reply.finishReason { details["finishReason"] = .string(reason) }
        guard let schema = infer.responseFormat else { return Outcome(output: .string(reply.content), details: details) }
        guard let parsed = JSONValue.parse(reply.content) else {
            throw StepFailure(.outputInvalid, step: path, message: "the reply is not JSON, as responseFormat asks: \(String(reply.content.prefix(300)))")
        }
        let violations = JSONSchema(schema).validate(parsed, root: "reply")
        guard violations.isEmpty else {
            throw StepFailure(.outputInvalid, step: path, message: "the reply breaks responseFormat: " + violations.prefix(5).map(\.description).joined(separator: "; "))
        }
        return Outcome(output: parsed, details: details)
    }
}
