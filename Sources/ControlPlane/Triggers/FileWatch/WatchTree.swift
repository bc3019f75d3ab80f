import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// The inotify watches of one directory watcher: the root's, and with
/// `recursive` one per subdirectory, each known by its path relative to the
/// root ("" for the root itself).
///
/// Subdirectories are watched with IN_DONT_FOLLOW and found with lstat(2), so
/// a symlink to a directory is an entry, not a subtree: no loops, and nothing
/// outside the root is watched. The root itself may be a symlink.
struct WatchTree {
    let fd: Int32
    let root: String
    let recursive: Bool
    private(set) var rootWatch: Int32 = -1
    private var paths: [Int32: String] = [:]
    /// Watches of a directory renamed away, until its IN_MOVED_TO says where
    /// to (or the batch ends and it left the watch): their events are dropped
    /// rather than reported under the old path.
    private var suspended: Set<Int32> = []

    static let mask = UInt32(IN_CREATE | IN_MODIFY | IN_CLOSE_WRITE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO
        | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR | IN_EXCL_UNLINK)

    /// Watches `root` alone (`addSubtree("")` adds the rest); throws the
    /// errno of a root that cannot be watched.
    init(fd: Int32, root: String, recursive: Bool) throws(POSIXError) {
        self.fd = fd
        self.root = root
        self.recursive = recursive
        let wd = inotify_add_watch(fd, root, Self.mask)
        guard wd >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        rootWatch = wd
        paths[wd] = ""
    }

    /// The directory a watch stands for, nil when it is unknown or suspended.
    func path(of wd: Int32) -> String? {
        suspended.contains(wd) ? nil : paths[wd]
    }

    /// The watch is gone (IN_IGNORED).
    mutating func forget(_ wd: Int32) {
        paths[wd] = nil
        suspended.remove(wd)
    }

    /// Watches every directory under `path` (a relative path, "" for the
    /// root) that is not watched yet, each before it is listed, so an entry
    /// made meanwhile is either listed or reported. Returns every entry found
    /// (relative paths) and the directories that could not be watched.
    @discardableResult
    mutating func addSubtree(_ path: String) -> (entries: [(path: String, isDirectory: Bool)], unwatched: [String]) {
        var found: [(path: String, isDirectory: Bool)] = []
        var unwatched: [String] = []
        var pending = [path]
        while let dir = pending.popLast() {
            if !dir.isEmpty {
                let wd = inotify_add_watch(fd, absolute(dir), Self.mask | UInt32(IN_DONT_FOLLOW))
                guard wd >= 0 else {
                    // Gone already (ENOENT, ENOTDIR) is no failure: its deletion is reported.
                    if errno != ENOENT && errno != ENOTDIR { unwatched.append(dir) }
                    continue
                }
                paths[wd] = dir
                suspended.remove(wd)
            }
            guard let names = try? FileManager.default.contentsOfDirectory(atPath: absolute(dir)) else { continue }
            for name in names {
                let child = dir.isEmpty ? name : dir + "/" + name
                var info = stat()
                guard lstat(absolute(child), &info) == 0 else { continue }
                let isDirectory = info.st_mode & S_IFMT == S_IFDIR
                found.append((child, isDirectory))
                if isDirectory { pending.append(child) }
            }
        }
        return (found, unwatched)
    }

    /// A directory was renamed away: hold its watches' events until `rename`
    /// or `remove` says where it went.
    mutating func suspend(_ path: String) {
        for (wd, dir) in paths where Self.isWithin(dir, path) { suspended.insert(wd) }
    }

    /// A directory was renamed inside the watch: its watches follow it.
    mutating func rename(_ from: String, to: String) {
        for (wd, dir) in paths where Self.isWithin(dir, from) {
            paths[wd] = to + dir.dropFirst(from.count)
            suspended.remove(wd)
        }
    }

    /// A directory left the watch: its watches go.
    mutating func remove(_ path: String) {
        for (wd, dir) in paths where Self.isWithin(dir, path) {
            inotify_rm_watch(fd, wd)
            forget(wd)
        }
    }

    private func absolute(_ path: String) -> String {
        path.isEmpty ? root : root + "/" + path
    }

    private static func isWithin(_ dir: String, _ path: String) -> Bool {
        dir == path || dir.hasPrefix(path + "/")
    }
}
