/// Runs a program. Either `argv`, or `script` fed to `interpreter` (default `sh`).
/// Output: stdout parsed as JSON when it is JSON, else the text without its final newline.
public struct ExecStep: Codable, Sendable, Equatable {
    public var argv: [String]?
    public var script: String?
    public var interpreter: [String]?
    public var env: [String: String]
    public var cwd: String?
    public var stdin: String?
    /// The author takes responsibility for expressions in the script's text
    /// (or a shell's `-c` argument); without it they are a validation error.
    public var allowInterpolation: Bool

    public init(argv: [String]? = nil, script: String? = nil, interpreter: [String]? = nil,
                env: [String: String] = [:], cwd: String? = nil, stdin: String? = nil, allowInterpolation: Bool = false) {
        self.argv = argv
        self.script = script
        self.interpreter = interpreter
        self.env = env
        self.cwd = cwd
        self.stdin = stdin
        self.allowInterpolation = allowInterpolation
    }

    /// Secrets the step's `env` references: the only ones it may resolve.
    public var secretNames: Set<String> {
        var out = Set<String>()
        for value in env.values {
            guard let t = try? Template(value) else { continue }
            for e in t.expressions { out.formUnion(e.secretNames) }
        }
        return out
    }
}
