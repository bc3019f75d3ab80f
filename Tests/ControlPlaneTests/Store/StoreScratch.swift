import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Where the store tests' SQLite files go: one directory per test process,
/// removed as the process exits. A test cannot remove its own file: the store
/// it opened closes only once the last task holding it lets go.
enum StoreScratch {
    private static let root: String = {
        let root = path(for: getpid())
        try? FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        atexit { try? FileManager.default.removeItem(atPath: StoreScratch.path(for: getpid())) }
        return root
    }()

    private static func path(for pid: pid_t) -> String { NSTemporaryDirectory() + "skelm-store-tests-\(pid)" }

    /// A new, empty directory for one store.
    static func directory(_ prefix: String) throws -> String {
        let dir = root + "/" + prefix + "-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }
}
