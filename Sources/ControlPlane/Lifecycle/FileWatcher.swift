import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Says when a file the gateway reads changed: the config file, or a workflow
/// file under one of the workflow dirs (subdirectories included). inotify by
/// hand: none of the libraries the gateway uses wraps it.
///
/// Editors save in place (IN_CLOSE_WRITE) or by renaming a temporary file over
/// the old one (IN_MOVED_TO), so directories are watched, not files; names are
/// filtered here. Bursts collapse: the stream holds at most one pending change.
final class FileWatcher: Sendable {
    private let fd: Int32
    private let stopped = Atomic<Bool>(false)
    /// Watch descriptor → directory, and what counts in each.
    private let watches = Mutex<[Int32: String]>([:])
    /// The config file's directory and name as given, and, when that is a
    /// symlink (a ConfigMap's `..data` swap, a dotfiles link), its target's too.
    private let configFiles: [(dir: String, name: String)]
    private let workflowDirs: [String]
    let changes: AsyncStream<Void>
    private let feed: AsyncStream<Void>.Continuation

    init?(configPath: String?, workflowDirs: [String]) {
        fd = inotify_init1(Int32(IN_CLOEXEC | IN_NONBLOCK))
        guard fd >= 0 else { return nil }
        var files: [(dir: String, name: String)] = []
        if let configPath {
            let given = URL(fileURLWithPath: configPath).standardizedFileURL
            let real = given.resolvingSymlinksInPath()
            for url in [given, real] where !files.contains(where: { $0.dir == url.deletingLastPathComponent().path && $0.name == url.lastPathComponent }) {
                files.append((url.deletingLastPathComponent().path, url.lastPathComponent))
            }
        }
        configFiles = files
        self.workflowDirs = workflowDirs
        (changes, feed) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
        for file in files { add(file.dir) }
        for dir in workflowDirs { addTree(dir) }
        let thread = Thread { [self] in loop() }
        thread.name = "skelm-file-watch"
        thread.start()
    }

    func stop() {
        stopped.store(true, ordering: .relaxed)
        feed.finish()
    }

    deinit { close(fd) }

    private static let mask = UInt32(IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_CREATE)

    private func add(_ dir: String) {
        let wd = inotify_add_watch(fd, dir, Self.mask | UInt32(IN_ONLYDIR))
        if wd >= 0 { watches.withLock { $0[wd] = dir } }
    }

    private func addTree(_ dir: String) {
        add(dir)
        guard let walker = FileManager.default.enumerator(atPath: dir) else { return }
        while let rel = walker.nextObject() as? String {
            var isDir: ObjCBool = false
            if FileManager.default.fileExists(atPath: dir + "/" + rel, isDirectory: &isDir), isDir.boolValue { add(dir + "/" + rel) }
        }
    }

    private func loop() {
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        while !stopped.load(ordering: .relaxed) {
            // A bounded wait, so `stop` is seen within a quarter second.
            guard poll(&pfd, 1, 250) > 0 else { continue }
            let n = read(fd, &buffer, buffer.count)
            guard n > 0 else { continue }
            var relevant = false
            var offset = 0
            while offset + 16 <= n {
                let (wd, mask, len) = buffer.withUnsafeBytes { raw in
                    (raw.loadUnaligned(fromByteOffset: offset, as: Int32.self),
                     raw.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self),
                     Int(raw.loadUnaligned(fromByteOffset: offset + 12, as: UInt32.self)))
                }
                let nameBytes = buffer[(offset + 16)..<min(n, offset + 16 + len)].prefix { $0 != 0 }
                let name = String(decoding: nameBytes, as: UTF8.self)
                offset += 16 + len
                // The kernel dropped events: whatever changed, a reload reads it.
                if mask & UInt32(IN_Q_OVERFLOW) != 0 { relevant = true }
                guard let dir = watches.withLock({ $0[wd] }) else { continue }
                let inWorkflowDir = workflowDirs.contains(where: { dir == $0 || dir.hasPrefix($0 + "/") })
                if mask & UInt32(IN_ISDIR) != 0 {
                    // A new subdirectory of a workflow dir may hold workflows too.
                    if inWorkflowDir {
                        if mask & UInt32(IN_CREATE | IN_MOVED_TO) != 0 { addTree(dir + "/" + name) }
                        relevant = true
                    }
                    // A ConfigMap-style swap renames a directory the config links into.
                    if configFiles.contains(where: { $0.dir == dir }) { relevant = true }
                    continue
                }
                if configFiles.contains(where: { $0.dir == dir && $0.name == name }) { relevant = true }
                if inWorkflowDir,
                   [".workflow.yaml", ".workflow.yml", ".workflow.json"].contains(where: name.hasSuffix) {
                    relevant = true
                }
            }
            if relevant { feed.yield() }
        }
    }
}
