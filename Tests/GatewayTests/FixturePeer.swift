import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A fixture server from `Tests/Fixtures/` (a Python script that prints
/// `PORT <n>` once it listens), run as a real peer of the gateway.
final class FixturePeer: @unchecked Sendable {
    // @unchecked: `port` and `process` are set in init and never change; the
    // process handle is only terminated, once, by the test that owns it.
    let port: Int
    private let process: Process
    /// Held open: some fixtures exit when their standard input ends.
    private let input: Pipe

    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures").path

    /// Starts `python3 <script> <arguments>` and waits for its port.
    static func start(_ script: String, _ arguments: [String] = [], environment: [String: String] = [:], log: String) async throws -> FixturePeer {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", fixtures + "/" + script] + arguments
        var env = ProcessInfo.processInfo.environment
        env.merge(environment) { $1 }
        process.environment = env
        let out = Pipe(), input = Pipe()
        process.standardOutput = out
        process.standardInput = input
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        process.standardError = FileHandle(forWritingAtPath: log)
        try process.run()
        let reader = out.fileHandleForReading
        // A blocking read, on a thread of its own: not one the async tests share.
        let line = await withCheckedContinuation { (cont: CheckedContinuation<String, Never>) in
            Thread {
                var bytes: [UInt8] = []
                while !bytes.contains(10) {
                    let chunk = reader.availableData
                    if chunk.isEmpty { break }
                    bytes += chunk
                }
                cont.resume(returning: String(decoding: bytes, as: UTF8.self))
            }.start()
        }
        let text = line.trimmingCharacters(in: .whitespacesAndNewlines)
        guard let port = Int(text.hasPrefix("PORT ") ? String(text.dropFirst(5)) : text) else {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            throw GatewayFailure(description: "\(script) did not start: \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
        }
        return FixturePeer(port: port, process: process, input: input)
    }

    private init(port: Int, process: Process, input: Pipe) {
        self.port = port
        self.process = process
        self.input = input
    }

    /// Sends the fixture a signal (what it does on one, its script says).
    func signal(_ number: Int32) {
        kill(process.processIdentifier, number)
    }

    /// SIGKILL: the test runner's threads block SIGTERM, and a child inherits that mask.
    func stop() {
        guard process.isRunning else { return }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    deinit { stop() }
}

/// Runs a program to its end on a thread of its own; returns its status and output.
func runProgram(_ argv: [String], environment: [String: String] = [:]) async -> (status: Int32, output: String) {
    await withCheckedContinuation { cont in
        Thread {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            p.arguments = argv
            var env = ProcessInfo.processInfo.environment
            env.merge(environment) { $1 }
            p.environment = env
            let pipe = Pipe()
            p.standardOutput = pipe
            p.standardError = pipe
            do { try p.run() } catch {
                cont.resume(returning: (-1, "\(error)"))
                return
            }
            let data = pipe.fileHandleForReading.readDataToEndOfFile()
            p.waitUntilExit()
            cont.resume(returning: (p.terminationStatus, String(decoding: data, as: UTF8.self)))
        }.start()
    }
}
