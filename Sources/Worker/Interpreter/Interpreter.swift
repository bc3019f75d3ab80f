import Foundation
import NIOCore
import Sandbox
import Synchronization
import Wire
import Workflow

#if canImport(Glibc)
import Glibc
#endif

/// Interprets one run segment inside the worker. Every step start, result,
/// retry and skip becomes an event the control plane persists; a completed
/// top-level step is a checkpoint the next segment does not run again.
final class Interpreter: Sendable {
    let spec: RunJobSpec
    let connectPorts: [UInt16]
    let egressSocket: String?
    /// Where a step's thread hands its result back (see `confined`).
    let loop: any EventLoop
    private let sink: @Sendable (JobEvent) -> Void
    /// Asks the control plane for a secret, per use.
    let resolveSecret: @Sendable (_ step: String, _ name: String) async throws -> String
    /// Every secret value this job has seen: redacted from everything it reports.
    let seen = Mutex<Set<String>>([])
    private let emitted = Mutex(0)
    /// Evaluated once: `env` may reference the input.
    let env: [String: String]

    init(spec: RunJobSpec, connectPorts: [UInt16], egressSocket: String? = nil, loop: any EventLoop,
         sink: @escaping @Sendable (JobEvent) -> Void,
         resolveSecret: @escaping @Sendable (String, String) async throws -> String = { _, name in
             throw StepFailure(code: "SecretNotFound", step: nil, message: "secret \(name) is not available")
         }) {
        self.spec = spec
        self.connectPorts = connectPorts
        self.egressSocket = egressSocket
        self.loop = loop
        self.sink = sink
        self.resolveSecret = resolveSecret
        let scope = ExpressionScope(["input": spec.input])
        var env: [String: String] = [:]
        for (k, v) in spec.workflow.env { env[k] = (try? Template.string(v, in: scope)) ?? v }
        self.env = env
    }

    var eventCount: Int { emitted.withLock { $0 } }

    func run() async -> RunJobResult {
        let top = Frame()
        let deadline = spec.workflow.timeoutMs.map { ContinuousClock.now + .milliseconds($0) }
        do {
            let last = try await runSteps(spec.workflow.steps, frame: top, prefix: "", deadline: deadline)
            var output = last
            if let result = spec.workflow.result {
                do {
                    output = try Template.evaluate(result, in: top.scope(input: spec.input, env: env))
                } catch {
                    throw StepFailure(code: "ExpressionError", step: nil, message: "result: \(error.message)")
                }
            }
            return RunJobResult(status: .succeeded, output: redactor.json(output), events: eventCount)
        } catch let parked as Parked {
            return RunJobResult(status: .parked, parked: parked, events: eventCount)
        } catch var failure as StepFailure {
            failure.message = redactor.text(failure.message)
            return RunJobResult(status: .failed, error: failure, events: eventCount)
        } catch {
            return RunJobResult(status: .failed, error: StepFailure(code: "InternalError", step: nil, message: "\(error)"), events: eventCount)
        }
    }

    private var redactor: Redactor { Redactor(seen.withLock { $0 }) }

    private func emit(_ type: String, step: String?, message: String = "", data: JSONValue? = nil) {
        emitted.withLock { $0 += 1 }
        let r = redactor
        sink(JobEvent(jobId: spec.jobId, type: type, message: r.text(message), step: step, data: data.map(r.json)))
    }

    // MARK: Steps

    func runSteps(_ steps: [Step], frame: Frame, prefix: String, deadline: ContinuousClock.Instant?) async throws -> JSONValue {
        var last: JSONValue = .null
        for step in steps {
            let (output, ran) = try await runStep(step, frame: frame, prefix: prefix, deadline: deadline)
            if ran { last = output }
        }
        return last
    }

    /// Returns the step's output and whether it ran (a skipped step has no output).
    func runStep(_ step: Step, frame: Frame, prefix: String, deadline: ContinuousClock.Instant?) async throws -> (JSONValue, Bool) {
        let path = prefix + step.id
        if prefix.isEmpty, let saved = spec.completed[step.id] {
            frame.record(step.id, output: saved, status: "succeeded")
            return (saved, true)
        }
        let scope = frame.scope(input: spec.input, env: env)
        if let condition = step.if {
            let holds: Bool
            do { holds = try Template(Template.condition(condition)).evaluate(in: scope).isTruthy } catch {
                throw fail(path, "ExpressionError", "if: \(error.message)")
            }
            if !holds {
                frame.record(step.id, output: .null, status: "skipped")
                emit("step.skipped", step: path, message: "condition is false")
                return (.null, false)
            }
        }
        if let approval = step.approval {
            // The run parks here: the worker ends its segment and nothing waits in it.
            let message: String
            do { message = try Template.string(approval.message, in: scope) } catch {
                throw fail(path, "ExpressionError", "approval.message: \(error.message)")
            }
            emit("step.started", step: path, data: ["attempt": 1, "kind": "approval"])
            emit("step.parked", step: path, message: message)
            throw Parked(step: step.id, message: message, timeoutMs: approval.timeoutMs, onTimeout: approval.onTimeout)
        }
        let attempts = 1 + max(0, step.retry?.max ?? 0)
        var attempt = 1
        while true {
            let started = ContinuousClock.now
            var stepDeadline = deadline
            if let t = step.timeoutMs {
                let own = started + .milliseconds(t)
                stepDeadline = deadline.map { min($0, own) } ?? own
            }
            emit("step.started", step: path, data: ["attempt": .number(Double(attempt)), "kind": .string(step.kindName)])
            do {
                let output = try await execute(step, path: path, frame: frame, deadline: stepDeadline)
                frame.record(step.id, output: output, status: "succeeded")
                emit("step.finished", step: path, data: ["attempt": .number(Double(attempt)), "output": output,
                                                       "durationMs": .number(started.elapsedMs)])
                return (output, true)
            } catch let failure as StepFailure {
                let retrying = attempt < attempts && !["ExpressionError", "InvalidStep", "PermissionDenied"].contains(failure.code)
                    && !(deadline.map { ContinuousClock.now >= $0 } ?? false)
                var data: [String: JSONValue] = ["attempt": .number(Double(attempt)), "code": .string(failure.code),
                                                 "willRetry": .bool(retrying), "durationMs": .number(started.elapsedMs)]
                for (k, v) in failure.details ?? [:] { data[k] = .string(v) }
                emit("step.failed", step: path, message: failure.message, data: .object(data))
                guard retrying, let retry = step.retry else {
                    frame.record(step.id, output: .null, status: "failed")
                    throw failure
                }
                try? await Task.sleep(for: .milliseconds(retry.delayMs(beforeRetry: attempt)))
                attempt += 1
            }
        }
    }

    private func execute(_ step: Step, path: String, frame: Frame, deadline: ContinuousClock.Instant?) async throws -> JSONValue {
        if let deadline, ContinuousClock.now >= deadline { throw fail(path, "Timeout", "no time left before the step started") }
        if let exec = step.exec {
            return try await runExec(exec, step: step, path: path, frame: frame, deadline: deadline)
        }
        if let parallel = step.parallel {
            return try await withThrowingTaskGroup(of: (String, JSONValue).self) { group in
                for child in parallel.steps {
                    group.addTask {
                        let (output, _) = try await self.runStep(child, frame: frame, prefix: path + "/", deadline: deadline)
                        return (child.id, output)
                    }
                }
                var outputs: [String: JSONValue] = [:]
                for try await (id, output) in group { outputs[id] = output }
                return .object(outputs)
            }
        }
        if let forEach = step.forEach {
            let items: [JSONValue]
            do {
                guard case let .array(list) = try Template.evaluate(forEach.items, in: frame.scope(input: spec.input, env: env)) else {
                    throw fail(path, "ExpressionError", "forEach.items did not evaluate to a list")
                }
                items = list
            } catch let e as ExpressionError {
                throw fail(path, "ExpressionError", "forEach.items: \(e.message)")
            }
            return .array(try await withThrowingTaskGroup(of: (Int, JSONValue).self) { group in
                var results = [JSONValue](repeating: .null, count: items.count)
                var next = 0
                func start() {
                    let i = next
                    next += 1
                    let iteration = Frame(parent: frame, variables: ["item": items[i], "index": .number(Double(i))])
                    group.addTask {
                        (i, try await self.runSteps(forEach.steps, frame: iteration, prefix: "\(path)[\(i)]/", deadline: deadline))
                    }
                }
                while next < min(max(forEach.concurrency, 1), items.count) { start() }
                for try await (i, output) in group {
                    results[i] = output
                    if next < items.count { start() }
                }
                return results
            })
        }
        if let branch = step.branch {
            let scope = frame.scope(input: spec.input, env: env)
            for (i, c) in branch.cases.enumerated() {
                let holds: Bool
                do { holds = try Template(Template.condition(c.if)).evaluate(in: scope).isTruthy } catch {
                    throw fail(path, "ExpressionError", "cases[\(i)].if: \(error.message)")
                }
                if holds {
                    emit("step.branch", step: path, data: ["case": .number(Double(i))])
                    return try await runSteps(c.steps, frame: frame, prefix: path + "/", deadline: deadline)
                }
            }
            emit("step.branch", step: path, data: ["case": "otherwise"])
            return try await runSteps(branch.otherwise ?? [], frame: frame, prefix: path + "/", deadline: deadline)
        }
        if let loop = step.loop {
            var last: JSONValue = .null
            for n in 0..<max(loop.max, 1) {
                let iteration = Frame(parent: frame, variables: ["iteration": .number(Double(n))])
                last = try await runSteps(loop.steps, frame: iteration, prefix: "\(path)[\(n)]/", deadline: deadline)
                iteration.publish()
                if let until = loop.until {
                    do {
                        if try Template(Template.condition(until)).evaluate(in: iteration.scope(input: spec.input, env: env)).isTruthy { break }
                    } catch {
                        throw fail(path, "ExpressionError", "until: \(error.message)")
                    }
                }
            }
            return last
        }
        throw fail(path, "InvalidStep", "step has no kind")
    }

    func deny(_ path: String, _ d: PermissionDenial) -> StepFailure {
        StepFailure(code: "PermissionDenied", step: path, message: d.message, details: ["dimension": d.dimension, "value": d.value])
    }

    func fail(_ path: String, _ code: String, _ message: String) -> StepFailure {
        StepFailure(code: code, step: path, message: message)
    }
}

extension ContinuousClock.Instant {
    var elapsedMs: Double { (ContinuousClock.now - self).milliseconds }
}

extension Duration {
    var milliseconds: Double {
        let (s, atto) = components
        return Double(s) * 1000 + Double(atto) / 1e15
    }
}
