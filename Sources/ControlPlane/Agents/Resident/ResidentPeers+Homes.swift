import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A resident peer's home: its working directory, kept across its lives, each
/// life running as a new uid. Between lives it belongs to root, so the uid the
/// last life had (free to be handed to another worker) owns nothing in it.
extension ResidentPeers {
    static func prepareHome(_ home: String) throws {
        let parent = (home as NSString).deletingLastPathComponent
        if mkdir(parent, 0o711) != 0, errno != EEXIST { throw WorkFailure(description: String(cString: strerror(errno))) }
        // Traversable, not listable, whatever the umask: each home is its own peer's.
        _ = chmod(parent, 0o711)
        // Its TMPDIR too (the sandbox's environment points there).
        if mkdir(home, 0o700) != 0, errno != EEXIST { throw WorkFailure(description: String(cString: strerror(errno))) }
    }

    /// Hands the home and everything in it to `uid`, never following a link:
    /// each level is opened relative to the one above with `O_NOFOLLOW`, so a
    /// link planted anywhere in the tree (by a life that had it) leads nowhere.
    /// Written with openat/fchownat because FileManager resolves paths whole.
    static func chownTree(_ path: String, uid: UInt32) {
        guard geteuid() == 0 else { return }
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { return }
        defer { close(fd) }
        _ = fchown(fd, uid, uid)
        chownContents(of: fd, uid: uid, depth: 0)
    }

    private static func chownContents(of dir: Int32, uid: UInt32, depth: Int) {
        guard depth < 64 else { return }
        let listing = dup(dir)
        guard listing >= 0, let stream = fdopendir(listing) else {
            if listing >= 0 { close(listing) }
            return
        }
        defer { closedir(stream) }
        while let entry = readdir(stream) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(cString: $0.baseAddress!.assumingMemoryBound(to: CChar.self)) }
            if name == "." || name == ".." { continue }
            _ = fchownat(dir, name, uid, uid, AT_SYMLINK_NOFOLLOW)
            // Only a real directory opens (a link fails with ELOOP, anything else ENOTDIR).
            let child = openat(dir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK)
            if child >= 0 {
                chownContents(of: child, uid: uid, depth: depth + 1)
                close(child)
            }
        }
    }
}
