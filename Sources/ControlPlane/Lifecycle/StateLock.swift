import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// One gateway per state dir: an exclusive `flock` on `stateDir/gateway.lock`,
/// held for the life of the process. The kernel drops it when the process
/// dies however it dies, so a lock left by a killed gateway is no lock at all:
/// the next start takes it. The file names the holder's pid for the message.
public final class StateLock: Sendable {
    private let fd: Int32
    let path: String

    public init(stateDir: String) throws {
        path = stateDir + "/gateway.lock"
        // CLOEXEC: workers and the template are exec'd and must not hold it.
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else {
            throw ConfigError(file: path, line: nil, keyPath: "stateDir", message: "cannot open the lock file: \(String(cString: strerror(errno)))")
        }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            var buf = [UInt8](repeating: 0, count: 32)
            let n = pread(fd, &buf, buf.count, 0)
            let holder = n > 0 ? String(decoding: buf[0..<n], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) : "?"
            close(fd)
            throw ConfigError(file: path, line: nil, keyPath: "stateDir",
                              message: "another gateway (pid \(holder)) is running on this state dir; stop it first (skelm gateway stop)")
        }
        let pid = "\(getpid())\n"
        _ = ftruncate(fd, 0)
        _ = pid.withCString { pwrite(fd, $0, strlen($0), 0) }
        self.fd = fd
    }

    deinit { close(fd) }

    /// The pid of the gateway holding `stateDir`'s lock; nil when none does.
    /// Asks the kernel, not a file a dead gateway left: a pid in a stale
    /// discovery file may by now be any other process.
    public static func holder(stateDir: String) -> Int32? {
        let fd = open(stateDir + "/gateway.lock", O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        if flock(fd, LOCK_SH | LOCK_NB) == 0 {
            flock(fd, LOCK_UN)
            return nil
        }
        var buf = [UInt8](repeating: 0, count: 32)
        let n = pread(fd, &buf, buf.count, 0)
        return n > 0 ? Int32(String(decoding: buf[0..<n], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)) : nil
    }
}
