import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Where an agent's `fs/*` requests may reach: the workspace and the step's
/// `fsRead` (reading) or `fsWrite` (writing), judged on real paths so that
/// `..` and symlinks cannot lead out. The worker's own Landlock layer bounds
/// the same files again.
struct PathRules: Sendable {
    let workspace: String
    let readable: [String]
    let writable: [String]

    enum Verdict: Equatable {
        case allowed(String)
        case denied(dimension: String, path: String)
        case invalid(String)
    }

    func read(_ path: String) -> Verdict { judge(path, roots: [workspace] + readable + writable, dimension: "fsRead") }
    func write(_ path: String) -> Verdict { judge(path, roots: [workspace] + writable, dimension: "fsWrite") }

    private func judge(_ path: String, roots: [String], dimension: String) -> Verdict {
        guard path.hasPrefix("/") else { return .invalid("the path must be absolute: \(path)") }
        guard !path.utf8.contains(0) else { return .invalid("the path contains a NUL byte") }
        // The file may not exist yet (a write): resolve the deepest directory that does.
        var real = Self.realpath(path)
        if real == nil {
            let parent = (path as NSString).deletingLastPathComponent
            let name = (path as NSString).lastPathComponent
            guard let dir = Self.realpath(parent), name != "..", name != "." else {
                return .invalid("\(parent) does not exist")
            }
            real = dir == "/" ? "/" + name : dir + "/" + name
        }
        guard let resolved = real else { return .invalid("\(path) cannot be resolved") }
        for root in roots where resolved == root || resolved.hasPrefix(root.hasSuffix("/") ? root : root + "/") {
            return .allowed(resolved)
        }
        return .denied(dimension: dimension, path: resolved)
    }

    static func realpath(_ path: String) -> String? {
        guard let r = Glibc.realpath(path, nil) else { return nil }
        defer { free(r) }
        return String(cString: r)
    }
}
