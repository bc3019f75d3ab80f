import CSandbox
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// What this host's kernel offers the sandbox, probed live (for `skelm doctor`
/// and for the pool's choice of namespaces).
public struct HostSupport: Sendable, Codable {
    public var seccomp: Bool
    public var landlockABI: Int
    public var userNamespaces: Bool
    public var networkNamespaces: Bool
    public var mountNamespaces: Bool
    public var pidNamespaces: Bool
    public var cgroupV2Delegated: Bool
    public var cgroupNote: String
    public var runningAsRoot: Bool
    public var notes: [String: String]

    public static func probe() -> HostSupport {
        var notes: [String: String] = [:]
        func ns(_ flags: Int32, _ name: String) -> Bool {
            var e: Int32 = 0
            let ok = sk_probe_namespaces(flags, &e) == 1
            if !ok { notes[name] = String(cString: strerror(e)) }
            return ok
        }
        let root = geteuid() == 0
        // As root the worker needs no user namespace for the others; probe as it will run.
        let base: Int32 = root ? 0 : sk_clone_newuser()
        let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
        let (v2, cgNote) = cgroupV2()
        return HostSupport(
            seccomp: status.contains("Seccomp:"),
            landlockABI: Int(sk_landlock_abi()),
            userNamespaces: ns(sk_clone_newuser(), "user"),
            networkNamespaces: ns(base | sk_clone_newnet(), "net"),
            mountNamespaces: ns(base | sk_clone_newns(), "mount"),
            pidNamespaces: ns(base | sk_clone_newpid(), "pid"),
            cgroupV2Delegated: v2,
            cgroupNote: cgNote,
            runningAsRoot: root,
            notes: notes)
    }

    /// cgroup v2 is an extra layer only where the host delegates pids and memory
    /// controllers to us; rlimits are the limit that always works.
    static func cgroupV2() -> (Bool, String) {
        guard let controllers = try? String(contentsOfFile: "/sys/fs/cgroup/cgroup.controllers", encoding: .utf8) else {
            return (false, "no unified cgroup v2 hierarchy at /sys/fs/cgroup")
        }
        let list = controllers.split(whereSeparator: \.isWhitespace)
        guard list.contains("pids"), list.contains("memory") else {
            return (false, "cgroup v2 without pids/memory controllers delegated")
        }
        return (access("/sys/fs/cgroup/cgroup.subtree_control", W_OK) == 0, "cgroup v2 with pids and memory")
    }

    public var namespaces: [WorkerSpawner.Namespace] {
        var out: [WorkerSpawner.Namespace] = []
        if !runningAsRoot && userNamespaces { out.append(.user) }
        if networkNamespaces { out.append(.net) }
        if mountNamespaces { out.append(.mount) }
        if pidNamespaces { out += [.pid, .ipc, .uts] }
        return out
    }
}
