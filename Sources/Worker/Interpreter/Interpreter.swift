import Foundation
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
    private let sink: @Sendable (JobEvent) -> Void
    /// Asks the control plane for a secret, per use.
    private let resolveSecret: @Sendable (_ step: String, _ name: String) async throws -> String
    /// Every secret value this job has seen: redacted from everything it reports.
    private let seen = Mutex<Set<String>>([])
    private let emitted = Mutex(0)
    /// Evaluated once: `env` may reference the input.
    private let env: [String: String]

    init(spec: RunJobSpec, connectPorts: [UInt16], egressSocket: String? = nil, sink: @escaping @Sendable (JobEvent) -> Void,
         resolveSecret: @escaping @Sendable (String, String) async throws -> String = { _, name in
             throw StepFailure(code: "SecretNotFound", step: nil, message: "secret \(name) is not available")
         }) {
        self.spec = spec
        self.connectPorts = connectPorts
        self.egressSocket = egressSocket
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

    // MARK: exec

    private func runExec(_ exec: ExecStep, step: Step, path: String, frame: Frame, deadline: ContinuousClock.Instant?) async throws -> JSONValue {
        let scope = frame.scope(input: spec.input, env: env)
        var argv: [String]
        var stepEnv = env
        let cwd: String?, stdin: String?
        // Secrets: only those this step's env names, resolved now, visible only to env.
        var envScope = scope
        if !exec.secretNames.isEmpty {
            var values: [String: JSONValue] = [:]
            for name in exec.secretNames.sorted() {
                do {
                    let value = try await resolveSecret(path, name)
                    seen.withLock { _ = $0.insert(value) }
                    values[name] = .string(value)
                } catch let e as RPCError {
                    let code = e.code == RPCError.notFound ? "SecretNotFound" : "PermissionDenied"
                    throw StepFailure(code: code, step: path, message: e.message,
                                      details: code == "PermissionDenied" ? ["dimension": "secrets", "value": name] : nil)
                }
            }
            envScope.roots["secrets"] = .object(values)
        }
        do {
            for (k, v) in exec.env { stepEnv[k] = try Template.string(v, in: envScope) }
            cwd = try exec.cwd.map { (c) throws(ExpressionError) -> String in try Template.string(c, in: scope) }
            stdin = try exec.stdin.map { (s) throws(ExpressionError) -> String in try Template.string(s, in: scope) }
            if let script = exec.script {
                let file = try writeScript(Template.string(script, in: scope), path: path)
                argv = (exec.interpreter ?? ["sh"]) + [file]
            } else {
                argv = try (exec.argv ?? []).map { (a) throws(ExpressionError) -> String in try Template.string(a, in: scope) }
            }
        } catch let e as ExpressionError {
            throw fail(path, "ExpressionError", e.message)
        }
        // Permissions: what the control plane decided, then the program's real path
        // against the allowed executables. The kernel enforces the same below.
        let policy = spec.policies[step.id] ?? StepPolicy()
        if let denied = policy.denied { throw deny(path, denied) }
        let program: String
        do {
            let cwdPath = try StepRunner.resolveCwd(cwd, workspace: spec.workspace)
            program = try StepRunner.resolveProgram(argv.first ?? "", cwd: cwdPath)
        } catch {
            throw fail(path, "ExecFailed", "\(error)")
        }
        if !policy.unrestricted, !policy.executables.contains(program) {
            throw deny(path, PermissionDenial(dimension: "allowedExecutables", value: program))
        }
        // Network: a forwarder of its own when its policy allows any host; the
        // step's Landlock layer can connect to that one port and no other.
        var ports = connectPorts
        var forwarder: EgressForwarder?
        if let egressSocket, policy.unrestricted || !policy.allowHosts.isEmpty {
            do {
                let f = try EgressForwarder.start(socket: egressSocket, jobId: spec.jobId, step: path)
                forwarder = f
                ports.append(f.port)
                for key in ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"] { stepEnv[key] = f.proxyURL }
            } catch {
                throw fail(path, "ExecFailed", "cannot start the egress forwarder: \(error)")
            }
        }
        defer { forwarder?.stop() }
        let ruleset = policy.unrestricted
            ? LandlockRuleset.confined(writable: [spec.workspace] + policy.fsWrite, readable: policy.fsRead, connectPorts: ports)
            : LandlockRuleset.step(workspace: spec.workspace, fsRead: policy.fsRead, fsWrite: policy.fsWrite,
                                   executables: policy.executables, connectPorts: ports)
        var timeoutMs = step.timeoutMs ?? spec.defaultStepTimeoutMs
        if let deadline {
            timeoutMs = min(timeoutMs, max(1, Int((deadline - ContinuousClock.now).milliseconds)))
        }
        let job = JobSpec(jobId: spec.jobId, workspace: spec.workspace, fsRead: policy.fsRead, fsWrite: policy.fsWrite,
                          limits: spec.limits, exec: ExecSpec(argv: argv, env: stepEnv, cwd: cwd, stdin: stdin, timeoutMs: timeoutMs))
        let result: JobResult = try await withCheckedThrowingContinuation { cont in
            // A thread of its own: the Landlock layer binds the thread that forks the step.
            let started = DetachedThread.run {
                do { cont.resume(returning: try StepRunner.run(job: job, ruleset: ruleset)) } catch {
                    cont.resume(throwing: StepFailure(code: "ExecFailed", step: path, message: "\(error)"))
                }
            }
            if !started { cont.resume(throwing: StepFailure(code: "ExecFailed", step: path, message: "cannot start a thread for the step")) }
        }
        if result.timedOut { throw fail(path, "Timeout", "timed out after \(timeoutMs) ms") }
        if let signal = result.signal {
            throw fail(path, signal == SIGSYS ? "SandboxViolation" : "ExecFailed",
                       "\(argv[0]) \(ExitStatus.describe(signal: signal))" + Self.tail(result.stderr))
        }
        if result.exitCode != 0 {
            throw fail(path, "ExecFailed", "\(argv[0]) exited with status \(result.exitCode ?? -1)" + Self.tail(result.stderr))
        }
        return Self.output(of: result.stdout)
    }

    /// Stdout that is JSON is that JSON; anything else is text without its final newline.
    static func output(of stdout: String) -> JSONValue {
        let trimmed = stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        if let first = trimmed.first, "{[\"".contains(first) || trimmed == "true" || trimmed == "false" || trimmed == "null"
            || Double(trimmed) != nil, let v = JSONValue.parse(trimmed) {
            return v
        }
        return .string(stdout.hasSuffix("\n") ? String(stdout.dropLast()) : stdout)
    }

    static func tail(_ stderr: String) -> String {
        let t = stderr.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !t.isEmpty else { return "" }
        return ": " + (t.count > 2000 ? "…" + String(t.suffix(2000)) : t)
    }

    private func writeScript(_ text: String, path: String) throws -> String {
        let dir = spec.workspace + "/.skelm-scripts"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let name = path.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" ? $0 : "_" }
        let file = dir + "/" + String(name) + ".script"
        guard FileManager.default.createFile(atPath: file, contents: Data(text.utf8)) else {
            throw fail(path, "ExecFailed", "could not write the script to the workspace")
        }
        return file
    }

    private func deny(_ path: String, _ d: PermissionDenial) -> StepFailure {
        StepFailure(code: "PermissionDenied", step: path, message: d.message, details: ["dimension": d.dimension, "value": d.value])
    }

    private func fail(_ path: String, _ code: String, _ message: String) -> StepFailure {
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
