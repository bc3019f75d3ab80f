import Foundation
import NIOPosix

#if canImport(Glibc)
import Glibc
#endif

/// Job workspaces and the homes beside them: made for a job, bounded while it
/// runs, removed after it, and swept at start.
extension WorkerPool {
    // MARK: Workspaces

    public static func prepareWorkspaceRoot(_ root: String) throws {
        func failed(_ what: String) -> WorkerFailure { .spawnFailed("\(what) \(root): \(String(cString: strerror(errno)))") }
        let parent = (root as NSString).deletingLastPathComponent
        if !parent.isEmpty { try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true) }
        if mkdir(root, 0o711) != 0, errno != EEXIST { throw failed("mkdir") }
        // Never through a link: one planted in a sticky directory (such as /tmp)
        // after the gateway's checks would otherwise point its chmod elsewhere.
        let fd = open(root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { throw failed("open") }
        defer { close(fd) }
        // Traversable by worker uids, listable and writable by nobody else.
        guard fchmod(fd, 0o711) == 0 else { throw failed("chmod") }
    }

    /// Removes every job workspace under `root` (not the egress socket): called
    /// at start, when no job of this gateway exists yet. Returns how many.
    public static func removeStaleWorkspaces(_ root: String) -> Int {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []
        // A workspace and its `.homes` go together; a `.homes` whose workspace
        // is already gone is swept the same way (its own `.homes` never exists).
        let stale = entries.filter { !$0.hasPrefix(".") }
        for name in stale { removeWorkspace(root + "/" + name) }
        return stale.filter { !$0.hasSuffix(".homes") }.count
    }

    /// After a job, off its path: the job's answer (and a sync run's response)
    /// does not wait for its workspace's `rmdir`s, the slowest file-system
    /// calls of a run on ext4 (about 0.15 ms each on the 2-core VM of
    /// docs/benchmarks.md, three per run), nor does a task of the control
    /// plane block on a workspace a step filled with files. They run on a
    /// thread of their own; a pool that stops still runs those queued
    /// (NIOThreadPool hands them over as cancelled, and removal ignores that),
    /// and what a killed gateway left is swept at the next start.
    ///
    /// Until then the workspace and its homes are the gateway's: a worker uid
    /// is recycled once the worker is reaped, and the next worker to hold it
    /// must not be able to enter a directory its last holder left (Landlock
    /// already keeps a job to its own workspace; this holds where it is absent).
    func removeWorkspaceLater(_ workspace: String) {
        if spawner.runningAsRoot {
            // The mode too: the job, as the owner, may have opened it to everyone.
            for dir in [workspace, workspace + ".homes"] where chown(dir, 0, 0) == 0 { _ = chmod(dir, 0o700) }
        }
        removalThread.submit { _ in Self.removeWorkspace(workspace) }
    }

    /// Most jobs leave an empty workspace (with an empty .tmp, for the kinds
    /// that make one): one or two rmdirs. Only one that left files pays for
    /// Foundation's recursive removal.
    static func removeWorkspace(_ path: String) {
        _ = rmdir(path + "/.tmp")
        for dir in [path, path + ".homes", path + ".skills"] {
            if rmdir(dir) != 0, errno != ENOENT { try? FileManager.default.removeItem(atPath: dir) }
        }
    }

    /// The job's directory and, beside it, the one its steps' homes go in
    /// (`<workspace>.homes`: outside the workspace, so no step's Landlock layer
    /// can write into another's home); both owned by the worker's uid (the
    /// worker makes each home, and the workspace's .tmp where a job needs one).
    func makeWorkspace(_ path: String, uid: UInt32) throws {
        for dir in [path, path + ".homes"] {
            guard mkdir(dir, 0o700) == 0 else { throw WorkerFailure.spawnFailed("mkdir \(dir): \(String(cString: strerror(errno)))") }
            if spawner.runningAsRoot, chown(dir, uid, uid) != 0 {
                throw WorkerFailure.spawnFailed("chown \(dir): \(String(cString: strerror(errno)))")
            }
        }
    }
}
