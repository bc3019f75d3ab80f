import Foundation

/// What steps must never write: the files that decide what the gateway lets
/// steps do. A ceiling that grants writing the config file, a workflow dir or a
/// registration dir would let one step widen what later steps may do, since
/// the gateway reloads those files by itself; a workflow dir that holds the
/// state dir would read what steps leave in their workspaces as workflows.
enum ControlFiles {
    /// `a` is `b` or lies below it.
    static func within(_ a: String, _ b: String) -> Bool {
        let b = b.hasSuffix("/") && b.count > 1 ? String(b.dropLast()) : b
        return a == b || a.hasPrefix(b == "/" ? "/" : b + "/")
    }

    static func check(_ loaded: ConfigLoader.Loaded, workspaceRoot: String) throws {
        let file = loaded.path ?? "config"
        func refuse(_ key: String, _ message: String) -> ConfigError {
            ConfigError(file: file, line: nil, keyPath: key, message: message)
        }
        let registration = RegistrationSettings(loaded: loaded)
        var guarded: [(what: String, path: String)] = loaded.workflowDirs.map { ("workflow dir", $0) }
            + registration.allowedDirs.map { ("registration dir", $0) }
        if let path = loaded.path {
            guarded.append(("the config file's directory", URL(fileURLWithPath: path).standardizedFileURL.deletingLastPathComponent().path))
        }
        let config = loaded.config
        let ceilings = [("defaults.permissions.fsWrite", config.defaults.permissions.fsWrite ?? [])]
            + config.permissionProfiles.sorted { $0.key < $1.key }.map { ("permissionProfiles.\($0.key).fsWrite", $0.value.fsWrite ?? []) }
            // A resident peer's own ceiling widens the workers' base layer too.
            + config.agents.enumerated().map { ("agents[\($0.offset)].permissions.fsWrite", $0.element.permissions?.fsWrite ?? []) }
            + config.mcpServers.enumerated().map { ("mcpServers[\($0.offset)].permissions.fsWrite", $0.element.permissions?.fsWrite ?? []) }
        for (key, paths) in ceilings {
            for granted in paths {
                for g in guarded where within(g.path, granted) || within(granted, g.path) {
                    throw refuse(key, "granting '\(granted)' would let steps write \(g.what) \(g.path), which decides what steps may do")
                }
            }
        }
        for dir in loaded.workflowDirs {
            for (what, path) in [("state directory", loaded.stateDir), ("workspace root", workspaceRoot)] where within(path, dir) {
                throw refuse("workflows.dirs", "'\(dir)' holds the \(what) \(path): what steps leave there would be read as workflows")
            }
        }
    }
}
