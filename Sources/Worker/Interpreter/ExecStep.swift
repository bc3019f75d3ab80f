import Foundation
import Sandbox
import Wire
import Workflow

#if canImport(Glibc)
import Glibc
#endif

/// `exec` steps: secrets, templates, the permission check, a home of the
/// step's own, its Landlock layer and egress forwarder, then the process.
extension Interpreter {
    func runExec(_ exec: ExecStep, step: Step, path: String, frame: Frame, deadline: ContinuousClock.Instant?) async throws -> JSONValue {
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
                    let value = try await calls.resolveSecret(path, name)
                    seen.withLock { _ = $0.insert(value) }
                    values[name] = .string(value)
                } catch let e as RPCError {
                    let code: FailureCode = e.code == RPCError.notFound ? .secretNotFound : .permissionDenied
                    throw StepFailure(code, step: path, message: e.message,
                                      details: code == .permissionDenied ? ["dimension": "secrets", "value": name] : nil)
                }
            }
            envScope.roots["secrets"] = .object(values)
        }
        // A home of its own for this step (HOME, TMPDIR, a script): another
        // step can neither plant code here nor read what this one leaves.
        let home: StepHome
        do { home = try StepHome.make(workspace: spec.workspace) } catch {
            throw fail(path, .execFailed, "\(error)")
        }
        defer { home.remove() }
        do {
            for (k, v) in exec.env { stepEnv[k] = try Template.string(v, in: envScope) }
            cwd = try exec.cwd.map { (c) throws(ExpressionError) -> String in try Template.string(c, in: scope) }
            stdin = try exec.stdin.map { (s) throws(ExpressionError) -> String in try Template.string(s, in: scope) }
            if let script = exec.script {
                let file = try writeScript(Template.string(script, in: scope), path: path, home: home)
                argv = (exec.interpreter ?? ["sh"]) + [file]
            } else {
                argv = try (exec.argv ?? []).map { (a) throws(ExpressionError) -> String in try Template.string(a, in: scope) }
            }
        } catch let e as ExpressionError {
            throw fail(path, .expressionError, e.message)
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
            throw fail(path, .execFailed, "\(error)")
        }
        if !policy.unrestricted, !policy.executables.contains(program) {
            throw deny(path, PermissionDenial(dimension: "allowedExecutables", value: program))
        }
        // Network: a forwarder of its own when its policy allows any host; the
        // step's Landlock layer can connect to that one port and no other.
        let (forwarder, ports) = try egress(for: policy, path: path, env: &stepEnv)
        defer { forwarder?.stop() }
        let ruleset = policy.unrestricted
            ? LandlockRuleset.confined(writable: [spec.workspace, home.path] + policy.fsWrite, readable: policy.fsRead, connectPorts: ports)
            : LandlockRuleset.step(workspace: spec.workspace, home: home.path, fsRead: policy.fsRead, fsWrite: policy.fsWrite,
                                   executables: policy.executables, connectPorts: ports)
        var timeoutMs = step.timeoutMs ?? spec.defaultStepTimeoutMs
        if let deadline {
            timeoutMs = min(timeoutMs, max(1, Int((deadline - ContinuousClock.now).milliseconds)))
        }
        var job = JobSpec(jobId: spec.jobId, workspace: spec.workspace, fsRead: policy.fsRead, fsWrite: policy.fsWrite,
                          limits: spec.limits, exec: ExecSpec(argv: argv, env: stepEnv, cwd: cwd, stdin: stdin, timeoutMs: timeoutMs))
        job.home = home.path
        let ready = job
        // A thread of its own: the Landlock layer binds the thread that forks the step.
        let result: JobResult
        do {
            result = try await confined(on: loop) { try StepRunner.run(job: ready, ruleset: ruleset) }
        } catch {
            throw StepFailure(.execFailed, step: path, message: "\(error)")
        }
        if result.timedOut { throw fail(path, .timeout, "timed out after \(timeoutMs) ms") }
        if let signal = result.signal {
            throw fail(path, signal == SIGSYS ? .sandboxViolation : .execFailed,
                       "\(argv[0]) \(ExitStatus.describe(signal: signal))" + Self.tail(result.stderr))
        }
        if result.exitCode != 0 {
            throw fail(path, .execFailed, "\(argv[0]) exited with status \(result.exitCode ?? -1)" + Self.tail(result.stderr))
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

    /// The script goes into the step's own home, where no other step can
    /// rewrite it between this write and the interpreter reading it.
    private func writeScript(_ text: String, path: String, home: StepHome) throws -> String {
        let file = home.path + "/script"
        guard FileManager.default.createFile(atPath: file, contents: Data(text.utf8), attributes: [.posixPermissions: 0o600]) else {
            throw fail(path, .execFailed, "could not write the script to the step's home")
        }
        return file
    }
}
