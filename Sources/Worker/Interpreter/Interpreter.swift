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
/// step, at any depth, is a checkpoint the next segment does not run again.
final class Interpreter: Sendable {
    let spec: RunJobSpec
    let connectPorts: [UInt16]
    let egressSocket: String?
    /// Where a step's thread hands its result back (see `confined`).
    let loop: any EventLoop
    private let sink: @Sendable (JobEvent) -> Void
    /// What the control plane does for the steps: secrets, requests, completions.
    let calls: ControlPlaneCalls
    /// Every secret value this job has seen: redacted from everything it reports.
    let seen = Mutex<Set<String>>([])
    private let emitted = Mutex(0)
    /// Evaluated once: `env` may reference the input.
    let env: [String: String]

    init(spec: RunJobSpec, connectPorts: [UInt16], egressSocket: String? = nil, loop: any EventLoop,
         sink: @escaping @Sendable (JobEvent) -> Void, calls: ControlPlaneCalls = ControlPlaneCalls()) {
        self.spec = spec
        self.connectPorts = connectPorts
        self.egressSocket = egressSocket
        self.loop = loop
        self.sink = sink
        self.calls = calls
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
                    throw StepFailure(.expressionError, step: nil, message: "result: \(error.message)")
                }
            }
            return RunJobResult(status: .succeeded, output: redactor.json(output), events: eventCount)
        } catch let parked as ParkedSteps {
            return RunJobResult(status: .parked, parked: parked.steps, events: eventCount)
        } catch var failure as StepFailure {
            failure.message = redactor.text(failure.message)
            return RunJobResult(status: .failed, error: failure, events: eventCount)
        } catch {
            return RunJobResult(status: .failed, error: StepFailure(.internalError, step: nil, message: "\(error)"), events: eventCount)
        }
    }

    private var redactor: Redactor { Redactor(seen.withLock { $0 }) }

    func emit(_ type: JobEventType, step: String?, message: String = "", data: JSONValue? = nil) {
        emitted.withLock { $0 += 1 }
        let r = redactor
        sink(JobEvent(jobId: spec.jobId, type: type.rawValue, message: r.text(message), step: step, data: data.map(r.json)))
    }

    // MARK: Steps

    /// Runs a list in order. A step that parks ends the list there: what
    /// follows it depends on its output.
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
        // A checkpoint at any depth: it ran to its end in an earlier segment
        // (and so did everything inside it).
        if let saved = spec.completed[path] {
            frame.record(step.id, output: saved, status: .succeeded)
            return (saved, true)
        }
        let scope = frame.scope(input: spec.input, env: env)
        if let condition = step.if {
            let holds: Bool
            do { holds = try Template(Template.condition(condition)).evaluate(in: scope).isTruthy } catch {
                throw fail(path, .expressionError, "if: \(error.message)")
            }
            if !holds {
                frame.record(step.id, output: .null, status: .skipped)
                emit(.stepSkipped, step: path, message: "condition is false")
                return (.null, false)
            }
        }
        if step.kind.parks {
            // The run parks here: this branch of the segment ends, and nothing waits in the worker.
            let request = try parkRequest(step, path: path, scope: scope)
            emit(.stepStarted, step: path, data: ["attempt": 1, "kind": .string(step.kindName.rawValue)])
            emit(.stepParked, step: path, message: request.message)
            throw ParkedSteps([Parked(step: path, request: request)])
        }
        let attempts = 1 + max(0, step.retry?.max ?? 0)
        // An interrupted step goes on counting its attempts.
        var attempt = (spec.attempts[path] ?? 0) + 1
        while true {
            let started = ContinuousClock.now
            var stepDeadline = deadline
            if let t = step.timeoutMs {
                let own = started + .milliseconds(t)
                stepDeadline = deadline.map { min($0, own) } ?? own
            }
            emit(.stepStarted, step: path, data: ["attempt": .number(Double(attempt)), "kind": .string(step.kindName.rawValue)])
            do {
                let result = try await execute(step, path: path, frame: frame, deadline: stepDeadline)
                frame.record(step.id, output: result.output, status: .succeeded)
                var data: [String: JSONValue] = ["attempt": .number(Double(attempt)), "output": result.output,
                                                 "durationMs": .number(started.elapsedMs)]
                for (k, v) in result.details { data[k] = v }
                emit(.stepFinished, step: path, data: .object(data))
                return (result.output, true)
            } catch let failure as StepFailure {
                let retrying = attempt < attempts && !Self.final.contains(failure.failureCode ?? .internalError)
                    && !(deadline.map { ContinuousClock.now >= $0 } ?? false)
                var data: [String: JSONValue] = ["attempt": .number(Double(attempt)), "code": .string(failure.code),
                                                 "willRetry": .bool(retrying), "durationMs": .number(started.elapsedMs)]
                for (k, v) in failure.details ?? [:] { data[k] = .string(v) }
                emit(.stepFailed, step: path, message: failure.message, data: .object(data))
                guard retrying, let retry = step.retry else {
                    frame.record(step.id, output: .null, status: .failed)
                    throw failure
                }
                try? await Task.sleep(for: .milliseconds(retry.delayMs(beforeRetry: attempt)))
                attempt += 1
            }
        }
    }

    /// Failures another attempt cannot change.
    static let final: Set<FailureCode> = [.expressionError, .invalidStep, .permissionDenied, .outputInvalid]

    /// What a parking step asks for, its templates evaluated here.
    private func parkRequest(_ step: Step, path: String, scope: ExpressionScope) throws -> Parked.Request {
        do {
            switch step.kind {
            case let .approval(a): return .approval(message: try Template.string(a.message, in: scope))
            case let .wait(w): return .wait(message: try w.message.map { (m) throws(ExpressionError) in try Template.string(m, in: scope) })
            case let .invoke(i): return .invoke(input: try Template.evaluate(i.input, in: scope))
            case .exec, .parallel, .forEach, .branch, .loop, .http, .infer, .agent, .mcp:
                throw fail(path, .invalidStep, "\(step.kindName.rawValue) steps do not park")
            }
        } catch let e as ExpressionError {
            throw fail(path, .expressionError, "\(step.kindName.rawValue): \(e.message)")
        }
    }

    /// A step's output, and what its `step.finished` event says besides (an infer step's usage).
    struct Outcome: Sendable {
        var output: JSONValue
        var details: [String: JSONValue] = [:]
    }

    private func execute(_ step: Step, path: String, frame: Frame, deadline: ContinuousClock.Instant?) async throws -> Outcome {
        if let deadline, ContinuousClock.now >= deadline { throw fail(path, .timeout, "no time left before the step started") }
        switch step.kind {
        case let .exec(exec):
            return Outcome(output: try await runExec(exec, step: step, path: path, frame: frame, deadline: deadline))
        case let .http(http):
            return Outcome(output: try await runHTTP(http, step: step, path: path, frame: frame, deadline: deadline))
        case let .infer(infer):
            return try await runInfer(infer, step: step, path: path, frame: frame, deadline: deadline)
        case let .agent(agent):
            return try await runAgent(agent, step: step, path: path, frame: frame, deadline: deadline)
        case let .mcp(mcp):
            return try await runMCP(mcp, step: step, path: path, frame: frame, deadline: deadline)
        case let .parallel(parallel):
            return Outcome(output: try await runParallel(parallel, path: path, frame: frame, deadline: deadline))
        case let .forEach(forEach):
            return Outcome(output: try await runForEach(forEach, path: path, frame: frame, deadline: deadline))
        case let .branch(branch):
            let scope = frame.scope(input: spec.input, env: env)
            for (i, c) in branch.cases.enumerated() {
                let holds: Bool
                do { holds = try Template(Template.condition(c.if)).evaluate(in: scope).isTruthy } catch {
                    throw fail(path, .expressionError, "cases[\(i)].if: \(error.message)")
                }
                if holds {
                    emit(.stepBranch, step: path, data: ["case": .number(Double(i))])
                    return Outcome(output: try await runSteps(c.steps, frame: frame, prefix: path + "/", deadline: deadline))
                }
            }
            emit(.stepBranch, step: path, data: ["case": "otherwise"])
            return Outcome(output: try await runSteps(branch.otherwise ?? [], frame: frame, prefix: path + "/", deadline: deadline))
        case let .loop(loop):
            var last: JSONValue = .null
            for n in 0..<max(loop.max, 1) {
                let iteration = Frame(parent: frame, variables: ["iteration": .number(Double(n))])
                last = try await runSteps(loop.steps, frame: iteration, prefix: "\(path)[\(n)]/", deadline: deadline)
                iteration.publish()
                if let until = loop.until {
                    do {
                        if try Template(Template.condition(until)).evaluate(in: iteration.scope(input: spec.input, env: env)).isTruthy { break }
                    } catch {
                        throw fail(path, .expressionError, "until: \(error.message)")
                    }
                }
            }
            return Outcome(output: last)
        case .approval, .wait, .invoke:
            throw fail(path, .invalidStep, "\(step.kindName.rawValue) steps park; they do not execute")
        }
    }

    /// Every branch runs to its end or its park; a failure stops the others.
    private func runParallel(_ parallel: ParallelStep, path: String, frame: Frame, deadline: ContinuousClock.Instant?) async throws -> JSONValue {
        try await withThrowingTaskGroup(of: (String, JSONValue?, [Parked]).self) { group in
            for child in parallel.steps {
                group.addTask {
                    do {
                        let (output, _) = try await self.runStep(child, frame: frame, prefix: path + "/", deadline: deadline)
                        return (child.id, output, [])
                    } catch let parked as ParkedSteps {
                        return (child.id, nil, parked.steps)
                    }
                }
            }
            var outputs: [String: JSONValue] = [:]
            var parks: [Parked] = []
            for try await (id, output, parked) in group {
                outputs[id] = output
                parks += parked
            }
            if !parks.isEmpty { throw ParkedSteps(parks) }
            return .object(outputs.compactMapValues { $0 })
        }
    }

    /// Iterations run `concurrency` at a time. Once one parks, no new one
    /// starts; those running go on to their end or their own park.
    private func runForEach(_ forEach: ForEachStep, path: String, frame: Frame, deadline: ContinuousClock.Instant?) async throws -> JSONValue {
        let items: [JSONValue]
        do {
            guard case let .array(list) = try Template.evaluate(forEach.items, in: frame.scope(input: spec.input, env: env)) else {
                throw fail(path, .expressionError, "forEach.items did not evaluate to a list")
            }
            items = list
        } catch let e as ExpressionError {
            throw fail(path, .expressionError, "forEach.items: \(e.message)")
        }
        return .array(try await withThrowingTaskGroup(of: (Int, JSONValue?, [Parked]).self) { group in
            var results = [JSONValue](repeating: .null, count: items.count)
            var parks: [Parked] = []
            var next = 0
            func start() {
                let i = next
                next += 1
                let iteration = Frame(parent: frame, variables: ["item": items[i], "index": .number(Double(i))])
                group.addTask {
                    do {
                        return (i, try await self.runSteps(forEach.steps, frame: iteration, prefix: "\(path)[\(i)]/", deadline: deadline), [])
                    } catch let parked as ParkedSteps {
                        return (i, nil, parked.steps)
                    }
                }
            }
            while next < min(max(forEach.concurrency, 1), items.count) { start() }
            for try await (i, output, parked) in group {
                if let output { results[i] = output }
                parks += parked
                if parks.isEmpty, next < items.count { start() }
            }
            if !parks.isEmpty { throw ParkedSteps(parks) }
            return results
        })
    }

    func deny(_ path: String, _ d: PermissionDenial) -> StepFailure {
        StepFailure(.permissionDenied, step: path, message: d.message, details: ["dimension": d.dimension, "value": d.value])
    }

    func fail(_ path: String, _ code: FailureCode, _ message: String) -> StepFailure {
        StepFailure(code, step: path, message: message)
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
