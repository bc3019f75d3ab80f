import CSandbox
import Foundation
import Wire

#if canImport(Glibc)
import Glibc
#endif

/// Runs one step process inside the worker, under the job's Landlock layer.
public enum StepRunner {
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    /// Applies the job's Landlock layer to the calling thread, then runs the program
    /// from that same thread so the forked process inherits the layer. Blocking: call
    /// it on a thread of its own.
    public static func run(job: JobSpec, ruleset: LandlockRuleset) throws -> JobResult {
        _ = try ruleset.restrictSelf()

        let exec = job.exec
        guard let program = exec.argv.first, !program.isEmpty else { throw Failure(description: "argv is empty") }
        let cwd = try resolveCwd(exec.cwd, workspace: job.workspace)
        let path = try resolveProgram(program, cwd: cwd)
        let env = try environment(exec.env, workspace: job.workspace, home: job.home)

        let argv = exec.argv.map { strdup($0) } + [nil]
        let envp = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        let stdinBytes = Array((exec.stdin ?? "").utf8)
        var result = sk_run_result_t()
        let rc: Int32 = path.withCString { cpath in
            cwd.withCString { ccwd in
                argv.withUnsafeBufferPointer { av in
                    envp.withUnsafeBufferPointer { ev in
                        stdinBytes.withUnsafeBufferPointer { sb in
                            sb.baseAddress!.withMemoryRebound(to: CChar.self, capacity: max(sb.count, 1)) { sin in
                                var spec = sk_run_spec_t()
                                spec.path = cpath
                                spec.argv = av.baseAddress
                                spec.envp = ev.baseAddress
                                spec.cwd = ccwd
                                spec.stdin_data = sin
                                spec.stdin_len = sb.count
                                spec.timeout_ms = Int64(exec.timeoutMs)
                                spec.rlimit_as = job.limits.addressSpaceBytes
                                spec.rlimit_cpu = job.limits.cpuSeconds
                                spec.max_output = job.limits.maxOutputBytes
                                return sk_run(&spec, &result)
                            }
                        }
                    }
                }
            }
        }
        defer { sk_run_result_free(&result) }
        guard rc == 0 else { throw Failure(description: "could not start \(path): \(String(cString: strerror(-rc)))") }
        if result.exec_errno != 0 {
            throw Failure(description: "could not execute \(path): \(String(cString: strerror(result.exec_errno)))")
        }
        func text(_ p: UnsafeMutablePointer<CChar>?, _ n: Int) -> String {
            guard let p, n > 0 else { return "" }
            return p.withMemoryRebound(to: UInt8.self, capacity: n) { String(decoding: UnsafeBufferPointer(start: $0, count: n), as: UTF8.self) }
        }
        return JobResult(
            resolvedPath: path,
            exitCode: result.exited == 1 ? result.exit_code : nil,
            signal: result.exited == 1 ? nil : result.term_signal,
            timedOut: result.timed_out != 0,
            durationMs: Double(result.duration_us) / 1000,
            stdout: text(result.out, result.out_len),
            stderr: text(result.errb, result.err_len),
            stdoutTruncated: result.out_truncated != 0,
            stderrTruncated: result.err_truncated != 0)
    }

    /// Bare names are looked up on the fixed trusted PATH only; paths are taken
    /// relative to the working directory. Either way the result is a real path
    /// (symlinks resolved), so what runs is what a policy check would see.
    public static func resolveProgram(_ program: String, cwd: String) throws -> String {
        let candidates: [String]
        if program.contains("/") {
            candidates = [program.hasPrefix("/") ? program : cwd + "/" + program]
        } else {
            candidates = SystemPaths.trustedPath.map { $0 + "/" + program }
        }
        for candidate in candidates {
            guard let real = realpath(candidate, nil) else { continue }
            defer { free(real) }
            var st = stat()
            let path = String(cString: real)
            if stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, access(path, X_OK) == 0 { return path }
        }
        throw Failure(description: program.contains("/")
            ? "\(program) is not an executable file"
            : "\(program) is not on the trusted PATH (\(SystemPaths.trustedPath.joined(separator: ":")))")
    }

    public static func resolveCwd(_ cwd: String?, workspace: String) throws -> String {
        guard let cwd, !cwd.isEmpty else { return workspace }
        let joined = cwd.hasPrefix("/") ? cwd : workspace + "/" + cwd
        guard let real = realpath(joined, nil) else { throw Failure(description: "cwd \(cwd) does not exist") }
        defer { free(real) }
        let path = String(cString: real)
        guard path == workspace || path.hasPrefix(workspace + "/") else {
            throw Failure(description: "cwd \(cwd) is outside the workspace")
        }
        return path
    }

    /// The step's environment: nothing inherited, a fixed PATH, and what the step
    /// declares. Loader overrides would let a step run code inside any program.
    /// Python neither puts the working directory (or the script's) first on its
    /// module path nor reads a user site: a module another step left in the
    /// shared workspace cannot shadow one a later step imports. A workflow may
    /// set either variable back explicitly.
    public static func environment(_ declared: [String: String], workspace: String, home: String? = nil) throws -> [String: String] {
        var env = ["PATH": SystemPaths.trustedPath.joined(separator: ":"), "HOME": home ?? workspace,
                   "TMPDIR": home ?? workspace + "/.tmp", "LANG": "C.UTF-8",
                   "PYTHONSAFEPATH": "1", "PYTHONNOUSERSITE": "1"]
        for (key, value) in declared {
            if key.hasPrefix("LD_") || key == "PATH" || key.contains("=") || key.isEmpty {
                throw Failure(description: "environment variable \(key) may not be set by a step")
            }
            env[key] = value
        }
        return env
    }
}
