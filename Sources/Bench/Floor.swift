import CBenchFloor
import CSandbox
import Foundation
import Sandbox

#if canImport(Glibc)
import Glibc
#endif

/// The floor: what the benchmark's run costs with nothing of the gateway
/// around it (Sources/BenchFloor/floor.c), in three levels, each adding to the
/// one before. Measured on the same machine in the same run as the gateway's
/// figures, so the gap between the last level and the gateway's CPU per run is
/// what the gateway itself costs, whatever the host's speed that hour.
enum Floor {
    struct Level {
        enum Outcome {
            case measured(cpuMs: Double, wallMs: Double)
            case skipped(String)
        }
        let name: String
        let outcome: Outcome
    }

    static let names = [
        "floor: the step alone (sh, vfork and exec, output read)",
        "floor: + a process of its own per run (fork, exit)",
        "floor: + its sandbox (namespaces, uid, Landlock, seccomp)",
    ]

    static func measure(iterations: Int) -> [Level] {
        let root = "/tmp/skelm-bench-floor-\(getpid())"
        // The sandboxed process's uid: one no account uses, as a worker's is.
        let uid: uid_t = 3_999_000
        let workspace = root + "/ws", home = workspace + "/.home"
        defer { try? FileManager.default.removeItem(atPath: root) }
        do {
            try FileManager.default.createDirectory(atPath: home, withIntermediateDirectories: true)
        } catch { return names.map { Level(name: $0, outcome: .skipped("\(error)")) } }
        _ = chmod(root, 0o755)
        for dir in [workspace, home] { _ = chown(dir, uid, uid); _ = chmod(dir, 0o700) }

        var errBuf = [CChar](repeating: 0, count: 256)
        let seccomp = getuid() == 0 ? sk_seccomp_build_memfd(&errBuf, errBuf.count) : -1
        defer { if seccomp >= 0 { close(seccomp) } }
        let sh = URL(fileURLWithPath: "/bin/sh").resolvingSymlinksInPath().path
        let worker = LandlockRuleset.confined(writable: [root])
        let step = LandlockRuleset.step(workspace: workspace, home: home, fsRead: [], fsWrite: [], executables: [sh])
        let argv = ["sh", "-c", incScript]
        let env = ["X=41", "PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + home]
        let noexec = Array(root.utf8CString)
        let ports = Array(Egress.forwarderPorts)

        let cArgv = argv.map { strdup($0) } + [nil], cEnv = env.map { strdup($0) } + [nil]
        defer { (cArgv + cEnv).forEach { free($0) } }
        let levels = getuid() == 0 && seccomp >= 0 ? names.count : Int(SKB_FLOOR_SANDBOX)
        // The levels take turns, a tenth of the runs at a time, and each reports
        // the median of its rounds: a virtual machine's speed can drift within seconds, and
        // one level measured after another would compare two speeds.
        let rounds = 10, perRound = max(1, iterations / rounds)
        var cpu = Array(repeating: [Double](), count: levels), wall = cpu
        var failure: String?
        worker.withCRules { workerRules in step.withCRules { stepRules in
            noexec.withUnsafeBufferPointer { noexecBuf in ports.withUnsafeBufferPointer { portBuf in
                workspace.withCString { cwd in sh.withCString { path in
                    cArgv.withUnsafeBufferPointer { a in cEnv.withUnsafeBufferPointer { e in
                        var spec = skb_floor_t()
                        spec.iterations = Int32(perRound)
                        spec.uid = uid
                        spec.gid = uid
                        spec.worker_rules = UnsafePointer(workerRules.baseAddress)
                        spec.worker_nrules = workerRules.count
                        spec.bind_ports = portBuf.baseAddress
                        spec.nbind = portBuf.count
                        spec.step_rules = UnsafePointer(stepRules.baseAddress)
                        spec.step_nrules = stepRules.count
                        spec.seccomp_fd = seccomp
                        spec.noexec = noexecBuf.baseAddress
                        spec.noexec_len = noexecBuf.count
                        spec.step.path = path
                        spec.step.cwd = cwd
                        spec.step.max_output = 1 << 20
                        spec.step.argv = a.baseAddress
                        spec.step.envp = e.baseAddress
                        var err = [CChar](repeating: 0, count: 256)
                        for _ in 0..<rounds where failure == nil {
                            for level in 0..<levels where failure == nil {
                                spec.level = Int32(level)
                                let cpuBefore = Internals.busyJiffies(), started = ContinuousClock.now
                                if skb_floor_run(&spec, &err, err.count) != 0 {
                                    failure = "\(names[level]): " + String(cBuffer: err)
                                }
                                wall[level].append(elapsedMs(since: started) / Double(perRound))
                                cpu[level].append(Double(Internals.busyJiffies() - cpuBefore) * 10 / Double(perRound))
                            }
                        }
                    } }
                } }
            } }
        } }
        return names.enumerated().map { level, name in
            if let failure { return Level(name: name, outcome: .skipped("failed: " + failure)) }
            guard level < levels else {
                return Level(name: name, outcome: .skipped(getuid() != 0 ? "needs root" : "no seccomp: \(String(cBuffer: errBuf))"))
            }
            return Level(name: name, outcome: .measured(cpuMs: Stats(samples: cpu[level]).pct(0.5), wallMs: Stats(samples: wall[level]).pct(0.5)))
        }
    }

    static func rows(_ levels: [Level], runs: Int) -> [(String, String, String)] {
        levels.map { level in
            switch level.outcome {
            case let .measured(cpu, wall):
                ("\(level.name), \(runs) runs", String(format: "%.2f ms CPU", cpu), String(format: "%.2f ms each", wall))
            case let .skipped(why):
                (level.name, why, "")
            }
        }
    }
}
