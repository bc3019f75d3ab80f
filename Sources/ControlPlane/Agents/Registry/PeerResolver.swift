import Foundation
import Sandbox
import Wire

#if canImport(Glibc)
import Glibc
#endif

/// Turns a configured command into what a worker may start: its real path,
/// the interpreter its `#!` line names, and the install prefix of each, which
/// the peer's sandbox must be able to read for it to start at all.
enum PeerResolver {
    static func problem(command: String) -> String? {
        do {
            _ = try resolve(command)
            return nil
        } catch {
            return "\(error)"
        }
    }

    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    /// `(program, executables, readable)`.
    static func resolve(_ command: String) throws -> (String, [String], [String]) {
        guard !command.isEmpty, command.hasPrefix("/") || !command.contains("/") else {
            throw Failure(description: "'\(command)' must be an absolute path or a name on the trusted PATH")
        }
        let program: String
        do { program = try StepRunner.resolveProgram(command, cwd: "/") } catch { throw Failure(description: "\(error)") }
        var executables = [program]
        var named = [command.hasPrefix("/") ? command : program]
        if let interpreter = shebang(of: program) {
            named.append(interpreter)
            let real: String
            do { real = try StepRunner.resolveProgram(interpreter, cwd: "/") } catch {
                throw Failure(description: "\(program) names the interpreter \(interpreter), which is not an executable file")
            }
            executables.append(real)
        }
        // A program in `<prefix>/bin/` reads its libraries from `<prefix>`: a
        // virtual environment, a language installation, /usr.
        var readable: [String] = []
        // As named and as resolved: a virtual environment's python is a link
        // into the installation it was made from, and both are read.
        for path in executables + named {
            let dir = (path as NSString).deletingLastPathComponent
            guard (dir as NSString).lastPathComponent == "bin" else { continue }
            let prefix = (dir as NSString).deletingLastPathComponent
            if prefix != "/", prefix != "/usr", !readable.contains(prefix) { readable.append(prefix) }
        }
        return (program, Array(Set(executables)).sorted(), readable)
    }

    /// The interpreter a script's first line names, when it has one (`#!/usr/bin/env x` names env).
    static func shebang(of path: String) -> String? {
        guard let handle = FileHandle(forReadingAtPath: path) else { return nil }
        defer { try? handle.close() }
        let head = (try? handle.read(upToCount: 256)) ?? Data()
        guard head.starts(with: Array("#!".utf8)) else { return nil }
        let line = String(decoding: head.dropFirst(2).prefix { $0 != 0x0A }, as: UTF8.self).trimmingCharacters(in: .whitespaces)
        return line.split(separator: " ").first.map(String.init)
    }

    static func launch(id: String, command: String, args: [String], env: [String: String]) throws -> PeerLaunch {
        let (program, executables, readable) = try resolve(command)
        return PeerLaunch(id: id, program: program, args: args, env: env, executables: executables, readable: readable)
    }
}
