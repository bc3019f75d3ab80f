import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Where registration may read from and where it keeps what it registered.
public struct RegistrationSettings: Sendable, Equatable {
    /// The config file's directory: relative paths are resolved against it,
    /// and paths under it may be registered.
    public var projectRoot: String
    /// `workflows.allowedRegistrationDirs`, absolute.
    public var allowedDirs: [String]
    public var stateDir: String
    public var limits: UploadLimits

    public init(projectRoot: String, allowedDirs: [String] = [], stateDir: String, limits: UploadLimits = UploadLimits()) {
        self.projectRoot = projectRoot
        self.allowedDirs = allowedDirs
        self.stateDir = stateDir
        self.limits = limits
    }

    public init(loaded: ConfigLoader.Loaded) {
        let base = loaded.path.map { URL(fileURLWithPath: $0).deletingLastPathComponent().path } ?? FileManager.default.currentDirectoryPath
        let root = URL(fileURLWithPath: base).standardizedFileURL.path
        let workflows = loaded.config.workflows
        self.init(projectRoot: root,
                  allowedDirs: workflows.allowedRegistrationDirs.map { Self.absolute($0, base: root) },
                  stateDir: loaded.stateDir,
                  limits: UploadLimits(workflows.upload))
    }

    /// Uploads, the staging area and the registrations file.
    var registeredDir: String { stateDir + "/registered" }

    static func absolute(_ path: String, base: String) -> String {
        URL(fileURLWithPath: path.hasPrefix("/") ? path : base + "/" + path).standardizedFileURL.path
    }
}

/// `workflows.upload`, in bytes.
public struct UploadLimits: Sendable, Equatable {
    public var maxZipBytes: Int
    public var maxUncompressedBytes: Int
    public var maxEntries: Int

    public init(maxZipBytes: Int = 1024 << 10, maxUncompressedBytes: Int = 8192 << 10, maxEntries: Int = 200) {
        self.maxZipBytes = maxZipBytes
        self.maxUncompressedBytes = maxUncompressedBytes
        self.maxEntries = maxEntries
    }

    public init(_ config: GatewayConfig.Workflows.Upload) {
        self.init(maxZipBytes: config.maxZipKB << 10, maxUncompressedBytes: config.maxUncompressedKB << 10, maxEntries: config.maxEntries)
    }
}

/// Which paths registration may read. A path is judged by where it really is
/// (every symlink resolved), never by how it is spelled: `workflows/x` that
/// links to `/etc/x` is `/etc/x`.
enum RegistrationPaths {
    /// The real path of `path` (relative: to the project root), allowed by the rules.
    static func resolve(_ path: String, _ settings: RegistrationSettings) throws(RegistrationError) -> String {
        guard !path.isEmpty, !path.contains("\0") else { throw .badSource("source.path must be a non-empty path") }
        let spelled = RegistrationSettings.absolute(path, base: settings.projectRoot)
        guard let real = realPath(spelled) else {
            throw .badSource("source.path '\(path)' does not exist (resolved against the project root \(settings.projectRoot))")
        }
        try check(real, spelled: path, settings)
        return real
    }

    /// Throws `forbidden` unless `real` (already resolved) lies under the
    /// project root or an allowed dir, and outside the state directory.
    static func check(_ real: String, spelled: String, _ settings: RegistrationSettings) throws(RegistrationError) {
        let shown = spelled == real ? "'\(real)'" : "'\(spelled)' (really \(real))"
        // The state dir holds worker workspaces and the gateway's own files:
        // nothing there is a workflow an operator wrote.
        if let state = realPath(settings.stateDir), isUnder(real, state) {
            throw .forbidden("\(shown) is inside the state directory \(state); workflows are never registered from there")
        }
        let roots = ([settings.projectRoot] + settings.allowedDirs).compactMap(realPath)
        guard roots.contains(where: { isUnder(real, $0) }) else {
            let allowed = settings.allowedDirs.isEmpty ? "workflows.allowedRegistrationDirs is empty"
                : "workflows.allowedRegistrationDirs: " + settings.allowedDirs.joined(separator: ", ")
            throw .forbidden("\(shown) is outside the project root \(settings.projectRoot) and every allowed registration dir (\(allowed)); symlinks are followed before this check")
        }
    }

    static func isUnder(_ path: String, _ root: String) -> Bool {
        path == root || path.hasPrefix(root.hasSuffix("/") ? root : root + "/")
    }

    static func realPath(_ path: String) -> String? {
        guard let p = realpath(path, nil) else { return nil }
        defer { free(p) }
        return String(cString: p)
    }
}
