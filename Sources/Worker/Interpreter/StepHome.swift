import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A fresh directory for one run of one exec step: its `HOME`, its `TMPDIR`
/// (the same directory: one inode fewer made and freed per step) and its
/// script. It lives beside the workspace, in `<workspace>.homes/`, which the
/// control plane makes for the job, so no step's Landlock layer can write into
/// another step's home: a step with no secret cannot leave a `.bashrc`,
/// `.profile` or `usercustomize.py` for a later step that holds one. Removed
/// when the step ends.
struct StepHome: Sendable {
    let path: String

    private static let counter = Atomic<Int>(0)

    static func make(workspace: String) throws -> StepHome {
        let n = counter.wrappingAdd(1, ordering: .relaxed).newValue
        let path = workspace + ".homes/\(n)"
        guard mkdir(path, 0o700) == 0 else {
            throw HomeFailure(description: "cannot create the step's home \(path): \(String(cString: strerror(errno)))")
        }
        return StepHome(path: path)
    }

    /// Most steps leave an empty home: one rmdir, else Foundation's recursive removal.
    func remove() {
        if rmdir(path) != 0, errno != ENOENT { try? FileManager.default.removeItem(atPath: path) }
    }

    struct HomeFailure: Error, CustomStringConvertible {
        let description: String
    }
}
