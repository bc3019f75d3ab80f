import Crypto
import Foundation
import Workflow

#if canImport(Glibc)
import Glibc
#endif

/// A source read and validated, not yet registered: every workflow in it
/// loaded without a problem, and (for an upload) its files extracted into a
/// staging directory beside their final place, ready to be renamed in.
struct RegistrationCandidate: Sendable {
    struct Loaded: Sendable {
        /// For a path: the real file. For an upload: relative to the zip's root.
        let file: String
        let definition: WorkflowDefinition
    }

    enum Origin: Sendable {
        case path(real: String)
        case upload(sha256: String, staging: String)
    }

    let origin: Origin
    let workflows: [Loaded]

    var source: RegisteredSource {
        switch origin {
        case let .path(real): .path(real)
        case let .upload(sha, _): .upload(sha256: sha)
        }
    }

    var ids: [String] { workflows.map(\.definition.id) }

    /// Removes the staging directory of an upload that will not be registered.
    func discard() {
        if case let .upload(_, staging) = origin { try? FileManager.default.removeItem(atPath: staging) }
    }

    // MARK: Reading a source

    /// A workflow file, or a directory of them, under the allowed roots.
    static func path(_ path: String, _ settings: RegistrationSettings) throws(RegistrationError) -> RegistrationCandidate {
        let real = try RegistrationPaths.resolve(path, settings)
        var isDir: ObjCBool = false
        _ = FileManager.default.fileExists(atPath: real, isDirectory: &isDir)
        let files: [String]
        if isDir.boolValue {
            files = WorkflowRegistry.files(in: [real])
            guard !files.isEmpty else { throw .badSource("\(real) holds no \(WorkflowRegistry.suffixes.joined(separator: ", ")) files") }
        } else {
            guard WorkflowRegistry.suffixes.contains(where: { real.hasSuffix($0) }) else {
                throw .badSource("\(real) is not a workflow file (\(WorkflowRegistry.suffixes.joined(separator: ", "))) or a directory")
            }
            files = [real]
        }
        guard files.count <= settings.limits.maxEntries else {
            throw .tooLarge("\(real) holds \(files.count) workflow files; workflows.upload.maxEntries allows \(settings.limits.maxEntries)")
        }
        var total = 0
        var realFiles: [String] = []
        for file in files {
            // A file in the directory may be a symlink out of it.
            guard let r = RegistrationPaths.realPath(file) else { throw .badSource("\(file) cannot be resolved") }
            try RegistrationPaths.check(r, spelled: file, settings)
            var st = stat()
            guard stat(r, &st) == 0, st.st_mode & S_IFMT == S_IFREG else { throw .badSource("\(file) is not a regular file") }
            total += Int(st.st_size)
            realFiles.append(r)
        }
        guard total <= settings.limits.maxUncompressedBytes else {
            throw .tooLarge("the workflow files under \(real) take \(total) bytes; workflows.upload.maxUncompressedKB allows \(settings.limits.maxUncompressedBytes >> 10) KB")
        }
        let loaded = try validate(realFiles.map { ($0, $0) })
        return RegistrationCandidate(origin: .path(real: real), workflows: loaded)
    }

    /// A zip: extracted into `registered/.staging-<uuid>/` and validated there.
    static func upload(_ zip: Data, _ settings: RegistrationSettings) throws(RegistrationError) -> RegistrationCandidate {
        let store = RegistrationStore(dir: settings.registeredDir)
        do { try store.prepare() } catch { throw .unavailable("cannot prepare \(store.dir): \(error)") }
        let sha = digest(zip)
        let staging = store.dir + "/" + RegistrationStore.stagingPrefix + UUID().uuidString.lowercased()
        let files = try ZipExtractor.extract(zip, into: staging, limits: settings.limits)
        do {
            let loaded = try validate(files.map { (staging + "/" + $0, $0) })
            return RegistrationCandidate(origin: .upload(sha256: sha, staging: staging), workflows: loaded)
        } catch {
            try? FileManager.default.removeItem(atPath: staging)
            throw error
        }
    }

    /// The upload's name in `registered/`: the same zip, the same tree.
    static func digest(_ zip: Data) -> String {
        SHA256.hash(data: zip).map { String(format: "%02x", $0) }.joined()
    }

    /// Every file must load, and no id may appear twice; issues name each file
    /// as the caller knows it (an upload's by its name in the zip).
    static func validate(_ files: [(path: String, shown: String)]) throws(RegistrationError) -> [Loaded] {
        var loaded: [Loaded] = []
        var issues: [WorkflowIssue] = []
        for (path, shown) in files {
            switch WorkflowLoader.load(file: path) {
            case let .valid(def):
                if let other = loaded.first(where: { $0.definition.id == def.id }) {
                    issues.append(WorkflowIssue(file: shown, path: "id", line: nil, message: "workflow id '\(def.id)' is already defined in \(other.file)"))
                } else {
                    loaded.append(Loaded(file: shown, definition: def))
                }
            case let .invalid(_, found):
                issues += found.map { var i = $0; i.file = shown; return i }
            }
        }
        guard issues.isEmpty else { throw .invalid(issues) }
        return loaded
    }
}
