import Foundation
import Yams

/// A config error a user can act on: which file, which key, which line.
public struct ConfigError: Error, CustomStringConvertible, Sendable {
    public let file: String
    public let line: Int?
    public let keyPath: String
    public let message: String

    public var description: String {
        let at = line.map { ":\($0)" } ?? ""
        let key = keyPath.isEmpty ? "" : " \(keyPath):"
        return "\(file)\(at):\(key) \(message)"
    }
}

/// Loads `skelm.config.yaml` (or JSON, which is YAML) strictly: an unknown key or a
/// wrong type is an error naming the key path and line, never silently ignored.
public enum ConfigLoader {
    public struct Loaded: Sendable {
        public let config: GatewayConfig
        public let path: String?
        public let stateDir: String

        public init(config: GatewayConfig, path: String?, stateDir: String) {
            self.config = config
            self.path = path
            self.stateDir = stateDir
        }
    }

    public static func load(path: String?) throws -> Loaded {
        let env = ProcessInfo.processInfo.environment
        guard let path else {
            let config = GatewayConfig()
            return Loaded(config: config, path: nil, stateDir: resolveStateDir(config, configPath: nil, env: env))
        }
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw ConfigError(file: path, line: nil, keyPath: "", message: "cannot read the file")
        }
        let config = try parse(text, file: path)
        return Loaded(config: config, path: path, stateDir: resolveStateDir(config, configPath: path, env: env))
    }

    public static func parse(_ text: String, file: String) throws -> GatewayConfig {
        if let refused = YAMLLimits.check(text) {
            throw ConfigError(file: file, line: refused.line, keyPath: "", message: refused.message)
        }
        let node: Node?
        do {
            node = try Yams.compose(yaml: text)
        } catch let error as YamlError {
            throw ConfigError(file: file, line: nil, keyPath: "", message: "not valid YAML: \(error)")
        }
        guard let node else { return GatewayConfig() }
        try checkKeys(node, schema: schema, path: "", file: file)
        do {
            let config = try YAMLDecoder().decode(GatewayConfig.self, from: node)
            try config.validate(file: file)
            return config
        } catch let error as DecodingError {
            throw describe(error, root: node, file: file)
        }
    }

    /// Only where the state dir is, from a config that may not validate as a
    /// whole: how the CLI still finds a running gateway (to reload it, say)
    /// after an edit broke some other key.
    public static func stateDirOnly(path: String) -> String? {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8), YAMLLimits.check(text) == nil,
              let node = try? Yams.compose(yaml: text) else { return nil }
        var config = GatewayConfig()
        config.stateDir = node.mapping?["stateDir"]?.string
        return resolveStateDir(config, configPath: path, env: ProcessInfo.processInfo.environment)
    }

    static func resolveStateDir(_ config: GatewayConfig, configPath: String?, env: [String: String]) -> String {
        let base = configPath.map { URL(fileURLWithPath: $0).deletingLastPathComponent().path } ?? FileManager.default.currentDirectoryPath
        let dir = env["SKELM_STATE_DIR"] ?? config.stateDir ?? ".skelm"
        let absolute = dir.hasPrefix("/") ? dir : base + "/" + dir
        return URL(fileURLWithPath: absolute).standardizedFileURL.path
    }

    /// The key tree of GatewayConfig, for naming unknown keys with their line.
    indirect enum Schema: Sendable { case object([String: Schema]), map(Schema), list(Schema), leaf }

    static let permissionSchema: Schema = .object([
        "allowedExecutables": .leaf, "fsRead": .leaf, "fsWrite": .leaf, "networkEgress": .object(["allowHosts": .leaf]),
        "allowedMcpServers": .leaf, "allowedTools": .leaf, "allowedSkills": .leaf, "allowedAgents": .leaf,
    ])

    static let schema: Schema = .object([
        "server": .object(["host": .leaf, "port": .leaf, "maxConcurrentRuns": .leaf, "maxBodyKB": .leaf, "runTimeoutSeconds": .leaf,
                           "sseHeartbeatSeconds": .leaf, "idleTimeoutSeconds": .leaf, "maxConnections": .leaf, "maxRunStorageMB": .leaf, "allowedHosts": .leaf, "socketGroup": .leaf,
                           "maxBatchItems": .leaf, "drainTimeoutSeconds": .leaf, "watchFiles": .leaf, "maxInvokeDepth": .leaf, "fleetMaxConcurrentRuns": .leaf,
                           "auth": .object(["mode": .leaf, "tokens": .leaf])]),
        "workflows": .object(["dirs": .leaf, "allowedRegistrationDirs": .leaf,
                              "upload": .object(["maxZipKB": .leaf, "maxUncompressedKB": .leaf, "maxEntries": .leaf])]),
        "storage": .object(["driver": .leaf, "runs": .leaf, "url": .leaf, "passwordEnv": .leaf, "poolSize": .leaf, "statementTimeoutSeconds": .leaf, "durability": .leaf,
                             "gatewayId": .leaf]),
        "audit": .object(["checkpointEvery": .leaf, "archive": .object(["maxSegmentMB": .leaf, "maxSegmentEntries": .leaf])]),
        "defaults": .object(["permissions": permissionSchema, "unrestrictedGrants": .leaf]),
        "permissionProfiles": .map(permissionSchema),
        "secrets": .object(["env": .object(["prefix": .leaf]), "file": .object(["path": .leaf])]),
        "stateDir": .leaf,
        "workers": .object([
            "minSpare": .leaf, "max": .leaf, "uidBase": .leaf, "workspaceRoot": .leaf, "spawn": .leaf, "templateRecycleAfter": .leaf,
            "limits": .object(["addressSpaceMB": .leaf, "workerAddressSpaceMB": .leaf, "cpuSeconds": .leaf, "processes": .leaf, "openFiles": .leaf,
                               "fileSizeMB": .leaf, "diskMB": .leaf, "diskFiles": .leaf, "outputKB": .leaf, "timeoutSeconds": .leaf]),
        ]),
        "sandbox": .object(["require": .leaf]),
        "egress": .object(["caFile": .leaf, "maxResponseKB": .leaf, "maxRedirects": .leaf,
                           "inject": .list(.object(["host": .leaf, "header": .leaf, "secret": .leaf, "format": .leaf]))]),
        "providers": .map(.object(["baseURL": .leaf, "model": .leaf, "apiKeySecret": .leaf])),
        "agents": .list(.object(["id": .leaf, "protocol": .leaf, "command": .leaf, "args": .leaf, "env": .leaf, "lifecycle": .leaf,
                                 "permissions": permissionSchema, "provider": .leaf])),
        "mcpServers": .list(.object(["id": .leaf, "transport": .leaf, "command": .leaf, "args": .leaf, "env": .leaf, "lifecycle": .leaf,
                                     "permissions": permissionSchema])),
        "skills": .object(["dirs": .leaf]),
    ])

    static func checkKeys(_ node: Node, schema: Schema, path: String, file: String) throws {
        if case let .list(each) = schema {
            guard let items = node.sequence else {
                throw ConfigError(file: file, line: line(node), keyPath: path, message: "must be a list")
            }
            for (i, item) in items.enumerated() { try checkKeys(item, schema: each, path: "\(path)[\(i)]", file: file) }
            return
        }
        if case let .map(each) = schema {
            guard let mapping = node.mapping else {
                throw ConfigError(file: file, line: line(node), keyPath: path, message: "must be a mapping")
            }
            for (key, value) in mapping { try checkKeys(value, schema: each, path: path + "." + (key.string ?? ""), file: file) }
            return
        }
        guard case let .object(children) = schema else { return }
        guard let mapping = node.mapping else {
            throw ConfigError(file: file, line: line(node), keyPath: path, message: "must be a mapping")
        }
        for (key, value) in mapping {
            let name = key.string ?? ""
            let full = path.isEmpty ? name : path + "." + name
            guard let child = children[name] else {
                let known = children.keys.sorted().joined(separator: ", ")
                throw ConfigError(file: file, line: line(key), keyPath: full, message: "unknown key (expected one of: \(known))")
            }
            try checkKeys(value, schema: child, path: full, file: file)
        }
    }

    static func line(_ node: Node) -> Int? { node.mark.map { $0.line } }

    static func describe(_ error: DecodingError, root: Node, file: String) -> ConfigError {
        let (path, message): ([any CodingKey], String) = switch error {
        case let .typeMismatch(type, ctx): (ctx.codingPath, "expected \(typeName(type))")
        case let .valueNotFound(type, ctx): (ctx.codingPath, "expected \(typeName(type)), found nothing")
        case let .keyNotFound(key, ctx): (ctx.codingPath + [key], "is required")
        case let .dataCorrupted(ctx): (ctx.codingPath, enumMessage(ctx.debugDescription) ?? ctx.debugDescription)
        @unknown default: ([], "\(error)")
        }
        var node: Node? = root
        for key in path {
            if let i = key.intValue { node = node?.sequence.flatMap { i < $0.count ? $0[i] : nil } }
            else { node = node?.mapping?[key.stringValue] }
        }
        let keyPath = path.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".").replacingOccurrences(of: ".[", with: "[")
        return ConfigError(file: file, line: node.flatMap(line), keyPath: keyPath, message: message)
    }

    /// Foundation says "Cannot initialize Scope from invalid String value root";
    /// the operator wants the values that would work.
    static let enumValues: [String: String] = [
        "Scope": Scope.allCases.map(\.rawValue).joined(separator: ", "),
        "Mode": "none, bearer", "Durability": "full, normal", "SpawnMode": "template, exec",
        "Lifecycle": "ephemeral, resident", "ProtocolName": "acp", "Transport": "stdio",
    ]

    static func enumMessage(_ text: String) -> String? {
        guard let m = text.firstMatch(of: /Cannot initialize (\w+) from invalid String value (.*)/),
              let values = enumValues[String(m.1)] else { return nil }
        return "'\(m.2)' is not one of: \(values)"
    }

    static func typeName(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: "a string"
        case is [String].Type: "a list of strings"
        case let t where "\(t)".hasPrefix("Sequence") || "\(t)".hasPrefix("Array"): "a list"
        case is RunStore.Durability.Type: "full or normal"
        case is AuthConfig.Mode.Type: "none or bearer"
        case is Scope.Type: "viewer, operator or admin"
        case is Int.Type, is UInt32.Type, is UInt64.Type: "an integer"
        case is Bool.Type: "true or false"
        default: "\(type)"
        }
    }
}

extension ConfigLoader.Loaded {
    /// `workflows.dirs`, each relative to the config file's directory.
    public var workflowDirs: [String] { config.absolute(config.workflows.dirs, configPath: path) }

}

extension GatewayConfig {
    /// Paths config writes relative to its own file, made absolute.
    func absolute(_ dirs: [String], configPath: String?) -> [String] {
        let base = configPath.map { URL(fileURLWithPath: $0).deletingLastPathComponent().path } ?? FileManager.default.currentDirectoryPath
        return dirs.map { d in URL(fileURLWithPath: d.hasPrefix("/") ? d : base + "/" + d).standardizedFileURL.path }
    }
}
