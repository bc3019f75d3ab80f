/// Which arguments of a command line are program text: the command string after
/// `sh -c`, the code after `python3 -c`, `node -e`, `perl -e`, `ruby -e` or
/// `php -r`. Every other argument reaches the program as one string, never parsed
/// as code, so a value there cannot inject anything.
enum CommandCode {
    /// How one interpreter takes code on its command line.
    struct Language: Sendable {
        let name: String
        /// Short options whose value is code (`c` in `-c`, `-ec`, `-cCODE`).
        let codeFlags: Set<Character>
        /// Long options whose value is code (`--eval`, `--eval=CODE`).
        let codeOptions: Set<String>
        /// Short options that take the next argument as a value that is not code.
        let valueFlags: Set<Character>
        /// Long options that take the next argument as a value that is not code.
        let valueOptions: Set<String>
        /// The shell's `-c` is a mode: the command string is the first operand, not the flag's value.
        var codeIsFirstOperand = false
        /// Short options that end the options and name what to run (`python -m module`).
        var runFlags: Set<Character> = []
        /// Whether code may follow its flag in the same argument (`-cCODE`); otherwise
        /// the flag may share its argument with other flags (`node -pe CODE`).
        var attachedCode = true
        /// Whether options go on after code (`perl -e A -e B`); otherwise the arguments
        /// after the code are the program's own.
        var moreAfterCode = false
        /// How the program reads a variable from its environment, for the safe form in messages.
        let readsEnv: @Sendable (String) -> String
    }

    static let shell = Language(name: "shell", codeFlags: ["c"], codeOptions: [], valueFlags: ["o", "O"],
                                valueOptions: ["--rcfile", "--init-file"], codeIsFirstOperand: true,
                                readsEnv: { "\"$\($0)\"" })
    static let python = Language(name: "python", codeFlags: ["c"], codeOptions: [], valueFlags: ["W", "X", "Q"],
                                 valueOptions: [], runFlags: ["m"], readsEnv: { "os.environ[\"\($0)\"]" })
    static let node = Language(name: "node", codeFlags: ["e", "p"], codeOptions: ["--eval", "--print"], valueFlags: ["r", "C"],
                               valueOptions: ["--require", "--import", "--loader", "--conditions", "--input-type"],
                               attachedCode: false, moreAfterCode: true, readsEnv: { "process.env.\($0)" })
    static let perl = Language(name: "perl", codeFlags: ["e", "E"], codeOptions: [], valueFlags: [], valueOptions: [],
                               moreAfterCode: true, readsEnv: { "$ENV{\($0)}" })
    static let ruby = Language(name: "ruby", codeFlags: ["e"], codeOptions: [], valueFlags: ["r", "I", "C", "E"], valueOptions: [],
                               moreAfterCode: true, readsEnv: { "ENV[\"\($0)\"]" })
    static let php = Language(name: "php", codeFlags: ["r"], codeOptions: [], valueFlags: ["d", "c"], valueOptions: [],
                              readsEnv: { "getenv(\"\($0)\")" })

    static let shells: Set<String> = ["sh", "bash", "dash", "zsh", "ksh", "ash", "mksh", "yash", "posh"]

    /// Programs that run the program named later on their command line (`env bash -c`,
    /// `busybox sh -c`, `timeout 10 sh -c`).
    static let wrappers: Set<String> = ["env", "busybox", "nice", "nohup", "timeout", "stdbuf", "setsid", "sudo", "doas", "time", "xargs"]

    static func language(of program: String) -> Language? {
        let name = program.split(separator: "/").last.map(String.init) ?? program
        if shells.contains(name) { return shell }
        if name.hasPrefix("python") || name.hasPrefix("pypy"),
           name.dropFirst(name.hasPrefix("python") ? 6 : 4).allSatisfy({ $0.isNumber || $0 == "." }) { return python }
        switch name {
        case "node", "nodejs": return node
        case "perl": return perl
        case "ruby": return ruby
        case "php": return php
        default: return nil
        }
    }

    /// Where the program is in `argv`: the first argument, or for a wrapper the
    /// first interpreter after it.
    static func program(in argv: [String]) -> (index: Int, language: Language)? {
        guard let first = argv.first else { return nil }
        if let l = language(of: first) { return (0, l) }
        let name = first.split(separator: "/").last.map(String.init) ?? first
        guard wrappers.contains(name) else { return nil }
        for i in argv.indices.dropFirst() {
            if let l = language(of: argv[i]) { return (i, l) }
        }
        return nil
    }

    /// What reads code in `argv`: the interpreter and where it is, the indices of
    /// arguments that are code, and whether it takes its code from standard input instead.
    static func code(in argv: [String]) -> (language: Language, program: Int, arguments: [Int], readsStdin: Bool)? {
        guard let (start, lang) = program(in: argv) else { return nil }
        var code: [Int] = []
        var shellCommand = false, ranSomething = false, stdinFlag = false
        var i = start + 1
        while i < argv.count {
            let arg = argv[i]
            if arg == "--" {
                i += 1
                break
            }
            if arg == "-" { break }
            var codeHere = false, codeNext = false
            if arg.hasPrefix("--") {
                let name = String(arg.prefix { $0 != "=" })
                if lang.codeOptions.contains(name) {
                    if name != arg { codeHere = true } else { codeNext = true }
                } else if lang.valueOptions.contains(name), name == arg {
                    i += 1
                }
            } else {
                guard arg.count > 1, arg.hasPrefix("-") || (lang.codeIsFirstOperand && arg.hasPrefix("+")) else { break }
                var rest = Substring(arg.dropFirst())
                flags: while let flag = rest.first {
                    rest = rest.dropFirst()
                    if lang.codeFlags.contains(flag) {
                        if lang.codeIsFirstOperand {
                            shellCommand = true
                        } else if lang.attachedCode {
                            if rest.isEmpty { codeNext = true } else { codeHere = true }
                            break flags
                        } else {
                            codeNext = true
                        }
                    } else if lang.runFlags.contains(flag) {
                        return (lang, start, code, false)
                    } else if lang.valueFlags.contains(flag) {
                        if rest.isEmpty { i += 1 }
                        break flags
                    } else if flag == "s" {
                        stdinFlag = true
                    }
                }
            }
            if codeHere { code.append(i) }
            if codeNext, i + 1 < argv.count {
                i += 1
                code.append(i)
            }
            if codeHere || codeNext {
                ranSomething = true
                if !lang.moreAfterCode { return (lang, start, code, false) }
            }
            i += 1
        }
        if shellCommand {
            if i < argv.count { code.append(i) }
            return (lang, start, code, false)
        }
        if ranSomething { return (lang, start, code, false) }
        // No code on the command line and no script file: the program is read from stdin.
        let operand = i < argv.count ? argv[i] : nil
        let readsStdin = operand == nil || operand == "-" || (lang.codeIsFirstOperand && stdinFlag)
        return (lang, start, code, readsStdin)
    }

    /// The interpreter a `script` runs under, for the safe form in messages.
    static func language(ofInterpreter interpreter: [String]?) -> Language {
        guard let interpreter, let (_, l) = program(in: interpreter) else { return shell }
        return l
    }
}
