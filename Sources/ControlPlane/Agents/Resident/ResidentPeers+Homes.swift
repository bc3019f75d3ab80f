import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A resident peer's home: its working directory, kept across its lives, each
/// life running as a new uid.
extension ResidentPeers {
    static func prepareHome(_ home: String) throws {
        let parent = (home as NSString).deletingLastPathComponent
        if mkdir(parent, 0o711) != 0, errno != EEXIST { throw WorkFailure(description: String(cString: strerror(errno))) }
        // Traversable, not listable, whatever the umask: each home is its own peer's.
        _ = chmod(parent, 0o711)
        if mkdir(home, 0o700) != 0, errno != EEXIST { throw WorkFailure(description: String(cString: strerror(errno))) }
    }

    /// Hands the home (and what the last life left in it) to this life's uid,
    /// without following links the last life may have left.
    static func chownTree(_ path: String, uid: UInt32) {
        guard geteuid() == 0 else { return }
        _ = lchown(path, uid, uid)
        guard let walker = FileManager.default.enumerator(atPath: path) else { return }
        while let name = walker.nextObject() as? String { _ = lchown(path + "/" + name, uid, uid) }
    }
}
