import Foundation
import Yams

#if canImport(Glibc)
import Glibc
#endif

/// Where secret values come from. Looked up per use (a rotated value is picked
/// up at once): first the `file` driver, then the `env` driver.
///
/// - `file`: a directory with one file per secret (the file name is the name,
///   the content the value, without a final newline), or one JSON/YAML file
///   mapping names to values. Refused when group- or world-readable.
/// - `env`: the gateway's environment variable `<prefix><NAME>`.
public struct SecretStore: Sendable {
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    let envPrefix: String?
    let filePath: String?
    let environment: [String: String]

    public init(envPrefix: String?, filePath: String?, environment: [String: String]) throws {
        self.envPrefix = envPrefix
        self.filePath = filePath
        self.environment = environment
        if let filePath { try Self.checkPrivate(filePath) }
    }

    public var isConfigured: Bool { envPrefix != nil || filePath != nil }

    public static let namePattern = try! NSRegularExpression(pattern: "^[A-Za-z_][A-Za-z0-9_]{0,127}$")

    /// The value, or nil when no driver has it.
    public func value(of name: String) throws -> String? {
        guard Self.namePattern.firstMatch(in: name, range: NSRange(name.startIndex..., in: name)) != nil else { return nil }
        if let filePath {
            var isDir: ObjCBool = false
            if FileManager.default.fileExists(atPath: filePath, isDirectory: &isDir), isDir.boolValue {
                let file = filePath + "/" + name
                if FileManager.default.fileExists(atPath: file) {
                    try Self.checkPrivate(file)
                    guard var text = try? String(contentsOfFile: file, encoding: .utf8) else {
                        throw Failure(description: "cannot read secret file \(file)")
                    }
                    if text.hasSuffix("\n") { text.removeLast() }
                    return text
                }
            } else {
                try Self.checkPrivate(filePath)
                guard let text = try? String(contentsOfFile: filePath, encoding: .utf8) else {
                    throw Failure(description: "cannot read secret file \(filePath)")
                }
                if let refused = YAMLLimits.check(text) {
                    throw Failure(description: "\(filePath):\(refused.line): \(refused.message)")
                }
                guard let map = (try? Yams.load(yaml: text)) as? [String: Any] else {
                    throw Failure(description: "\(filePath) is not a JSON or YAML mapping of names to values")
                }
                if let v = map[name] { return "\(v)" }
            }
        }
        if let envPrefix, let v = environment[envPrefix + name] { return v }
        return nil
    }

    /// A secrets file or directory readable by anyone but its owner is refused.
    static func checkPrivate(_ path: String) throws {
        var st = stat()
        guard stat(path, &st) == 0 else { throw Failure(description: "cannot stat \(path): \(String(cString: strerror(errno)))") }
        if st.st_mode & 0o077 != 0 {
            throw Failure(description: "\(path) is readable by others (mode \(String(st.st_mode & 0o777, radix: 8))); secrets must be 0600 (directories 0700)")
        }
    }
}
