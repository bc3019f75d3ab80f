import Foundation
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// Where job workspaces go: a directory worker uids can reach, and that only
/// the gateway can change.
extension Gateway {
    /// Worker uids must be able to walk down to their workspace. A state dir
    /// below a directory they cannot search (a checkout in `/root`, mode 0700)
    /// would make every worker fail its Landlock set-up; then the workspaces
    /// (and the egress socket beside them) go to `/run/skelm/<hash>`, a
    /// root-owned path every uid can search. A workspace root that config
    /// names is used as it is, or refused, naming the directory and the fix.
    static func reachableWorkspaceRoot(_ root: String, configured: Bool, stateDir: String, file: String?, logger: Logger) throws -> String {
        guard let blocked = unsearchableAncestor(of: root) else { return root }
        if configured {
            throw ConfigError(file: file ?? "config", line: nil, keyPath: "workers.workspaceRoot",
                              message: "worker uids cannot reach \(root): \(blocked) is not searchable by other users (chmod o+x \(blocked), or name a workspaceRoot outside it)")
        }
        let h = GatewayConfig.stateDirHash(stateDir)
        let base = "/run/skelm"
        try FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
        // Not a directory someone else planted: root's own, not a symlink, not writable by others.
        var st = stat()
        guard lstat(base, &st) == 0, st.st_mode & S_IFMT == S_IFDIR, st.st_uid == 0, chmod(base, 0o711) == 0 else {
            throw ConfigError(file: file ?? "config", line: nil, keyPath: "workers.workspaceRoot",
                              message: "\(base) is not a directory owned by root; remove it, or set workers.workspaceRoot")
        }
        let own = base + "/" + String(h, radix: 16)
        try FileManager.default.createDirectory(atPath: own, withIntermediateDirectories: true)
        guard chmod(own, 0o711) == 0 else {
            throw ConfigError(file: file ?? "config", line: nil, keyPath: "workers.workspaceRoot", message: "chmod \(own): \(String(cString: strerror(errno)))")
        }
        let moved = own + "/workspaces"
        logger.notice("workspaces are outside the state dir, which worker uids cannot reach", metadata: [
            "workspaceRoot": "\(moved)", "unsearchable": "\(blocked)",
        ])
        return moved
    }

    /// The first existing directory above `path` (or `path` itself) that others cannot search.
    static func unsearchableAncestor(of path: String) -> String? {
        var dirs: [String] = []
        var url = URL(fileURLWithPath: path).standardizedFileURL
        while url.path != "/" {
            dirs.insert(url.path, at: 0)
            url.deleteLastPathComponent()
        }
        for dir in ["/"] + dirs {
            var st = stat()
            guard stat(dir, &st) == 0 else { return nil }   // from here on, the gateway creates it (0711)
            if st.st_mode & S_IXOTH == 0 { return dir }
        }
        return nil
    }

    /// The workspace root holds every job's files, made (then handed to a worker
    /// uid) and removed by the gateway. A root that is a symlink, that another
    /// user owns, or that sits in a directory others can write would let them
    /// swap a workspace for a link between its `mkdir` and its `chown`, or point
    /// the gateway's `chmod` at a directory of their choice. Checked before the
    /// root is made or changed (`exists: false` allows it to be missing), and again after.
    static func checkWorkspaceRoot(_ root: String, exists: Bool, file: String?) throws {
        func refuse(_ why: String) -> ConfigError {
            ConfigError(file: file ?? "config", line: nil, keyPath: "workers.workspaceRoot", message: why)
        }
        var url = URL(fileURLWithPath: root).standardizedFileURL
        var st = stat()
        if lstat(url.path, &st) == 0 {
            guard st.st_mode & S_IFMT == S_IFDIR else {
                throw refuse("\(url.path) is not a directory (a symlink or a file); name the directory itself")
            }
            guard st.st_uid == geteuid() else {
                throw refuse("\(url.path) belongs to uid \(st.st_uid), not to the gateway's (\(geteuid())); chown it, or name another workspaceRoot")
            }
        } else if exists || errno != ENOENT {
            throw refuse("cannot use \(url.path): \(String(cString: strerror(errno)))")
        }
        // Every directory above it: one that others may write (without the
        // sticky bit, which keeps them to their own entries) lets them rename
        // the root, or a directory on its way, and put their own in its place.
        while url.path != "/" {
            url.deleteLastPathComponent()
            // A link on the way is as good as the one who made it: root's or the gateway's.
            if lstat(url.path, &st) == 0, st.st_mode & S_IFMT == S_IFLNK, st.st_uid != 0, st.st_uid != geteuid() {
                throw refuse("\(url.path) is a link that uid \(st.st_uid) made; name a workspaceRoot whose path is the gateway's own")
            }
            guard stat(url.path, &st) == 0 else { continue }   // made by the gateway (0711)
            let others = st.st_mode & S_IWOTH != 0 || (st.st_mode & S_IWGRP != 0 && st.st_gid != 0)
            if others, st.st_mode & S_ISVTX == 0 {
                throw refuse("\(url.path) can be written by other users (mode \(String(st.st_mode & 0o7777, radix: 8))): they could replace the workspace root; chmod go-w \(url.path), or name a workspaceRoot elsewhere")
            }
        }
    }
}
