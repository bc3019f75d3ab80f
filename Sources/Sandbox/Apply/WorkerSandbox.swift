import CSandbox
import Foundation
import Wire

#if canImport(Glibc)
import Glibc
#endif

/// Builds the worker's own confinement, each layer before the one that would
/// stop it from being built (fd hygiene, Landlock, rlimits, seccomp), and reports
/// what it measured afterwards (not what it intended).
///
/// The spawner already made the namespaces, dropped the uid and set no_new_privs
/// (those need privileges or must precede exec). Here, in the freshly exec'd
/// worker and before any other thread exists: fd hygiene, Landlock, rlimits, seccomp.
public enum WorkerSandbox {
    /// The worker's channel to the control plane.
    public static let channelFD: Int32 = 3
    /// The sealed memfd with the seccomp program; closed once loaded.
    public static let seccompFD: Int32 = 4

    public static func apply(_ spec: WorkerSandboxSpec) -> SandboxReport {
        var report = SandboxReport(uid: getuid())
        var missing: [SandboxLayer: String] = [:]

        // Landlock binds only the calling thread; with a second thread alive the
        // sandbox would have a hole, so refuse rather than continue.
        let threads = threadCount()
        if threads != 1 {
            missing[.landlock] = "\(threads) threads were running before the sandbox"
        }

        // fds: 0-2 are /dev/null or the log, 3 the channel, 4 the filter. Nothing else.
        if sk_set_cloexec(channelFD) == 0, sk_set_cloexec(seccompFD) == 0, sk_close_fds_from(5) == 0 {
            report.active.append(.fdHygiene)
        } else {
            missing[.fdHygiene] = "close_range failed"
        }

        if sk_set_no_new_privs() != 0 { missing[.noNewPrivs] = "prctl failed" }

        if missing[.landlock] == nil {
            let forwarders = spec.egressSocket == nil ? [] : Array(Egress.forwarderPorts)
            var ruleset = LandlockRuleset.confined(writable: [spec.workspaceRoot] + spec.extraWritePaths, readable: spec.extraReadPaths,
                                                   connectPorts: spec.connectPorts + forwarders)
            ruleset.bindPorts = forwarders
            do {
                report.landlockABI = try ruleset.restrictSelf()
                report.active.append(.landlock)
            } catch {
                missing[.landlock] = "\(error)"
            }
        }

        var limits: [(String, UInt64)] = [("nofile", spec.maxOpenFiles), ("fsize", spec.maxFileSizeBytes), ("core", 0),
                                          ("as", spec.maxAddressSpaceBytes)]
        if spec.maxProcesses > 0 { limits.append(("nproc", spec.maxProcesses)) }
        var rlimitsOK = true
        for (name, value) in limits {
            let r = sk_set_rlimit(name, value)
            if r == 0 {
                report.rlimits[name] = value
            } else {
                rlimitsOK = false
                missing[name == "nproc" ? .processLimit : .rlimits] = "setrlimit(\(name)): \(String(cString: strerror(-r)))"
            }
        }
        if rlimitsOK { report.active.append(.rlimits) }
        if spec.maxProcesses > 0, report.rlimits["nproc"] != nil {
            if getuid() == 0 {
                // The kernel does not enforce RLIMIT_NPROC for uid 0 (measured): say so.
                missing[.processLimit] = "RLIMIT_NPROC is not enforced for root"
            } else {
                report.active.append(.processLimit)
            }
        } else if missing[.processLimit] == nil {
            missing[.processLimit] = "the worker's uid is shared with host processes (not running as root)"
        }

        // Measured, like the rest: every place a job can write is on a noexec
        // mount, and memfds cannot be executed in this pid namespace.
        let writable = ([spec.workspaceRoot] + spec.extraWritePaths).filter { access($0, F_OK) == 0 }
        if let exec = writable.first(where: { sk_path_noexec($0) != 1 }) {
            missing[.noexec] = "\(exec) is not mounted noexec"
        } else {
            report.active.append(.noexec)
        }
        let memfd = sk_memfd_noexec_level()
        if memfd == 2 {
            report.active.append(.memfd)
        } else {
            missing[.memfd] = memfd < 0 ? "this kernel has no vm.memfd_noexec (Linux 6.3 or later)" : "vm.memfd_noexec is \(memfd), not 2"
        }

        let loaded = sk_seccomp_load_fd(seccompFD)
        close(seccompFD)
        if loaded != 0 { missing[.seccomp] = "loading the filter: \(String(cString: strerror(-loaded)))" }

        // Measured, not assumed.
        if sk_seccomp_mode() == 2 { report.active.append(.seccomp) }
        if sk_no_new_privs_set() == 1 { report.active.append(.noNewPrivs) }
        if getuid() != 0 && geteuid() != 0 { report.active.append(.nonRoot) } else { missing[.nonRoot] = "running as uid 0" }
        if spec.namespaces.contains("net") {
            if onlyLoopback() { report.active.append(.networkNamespace) } else { missing[.networkNamespace] = "interfaces other than lo are visible" }
        } else {
            missing[.networkNamespace] = "not requested or not permitted on this host"
        }
        if spec.namespaces.contains("mount") { report.active.append(.mountNamespace) } else { missing[.mountNamespace] = "not requested or not permitted on this host" }
        if spec.namespaces.contains("pid") {
            if getpid() == 1 { report.active.append(.pidNamespace) } else { missing[.pidNamespace] = "pid is \(getpid()), not 1" }
        } else {
            missing[.pidNamespace] = "not requested or not permitted on this host"
        }
        for layer in report.active { missing[layer] = nil }
        report.active.sort()
        report.missing = Dictionary(uniqueKeysWithValues: missing.map { ($0.key.rawValue, $0.value) })
        return report
    }

    public static func threadCount() -> Int {
        Int(sk_thread_count())
    }

    static func onlyLoopback() -> Bool {
        sk_only_loopback() == 1
    }
}
