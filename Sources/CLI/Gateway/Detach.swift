import ControlPlane
import Foundation
import SkelmClient
import Workflow

#if canImport(Glibc)
import Glibc
#endif

/// `skelm gateway start --detach`: the same command again, in a session of its
/// own with its output in a log file; this process waits until that gateway
/// answers (or dies, then shows why) and returns.
enum Detach {
    static let marker = "SKELM_DETACHED"

    static func start(loaded: ConfigLoader.Loaded, logFile: String?, json: Bool) async throws {
        let log = logFile ?? loaded.stateDir + "/gateway.log"
        try FileManager.default.createDirectory(atPath: loaded.stateDir, withIntermediateDirectories: true)
        let fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw CLIFailure("cannot open \(log): \(String(cString: strerror(errno)))") }
        let output = FileHandle(fileDescriptor: fd, closeOnDealloc: true)
        let offset = output.seekToEndOfFile()

        let child = Process()
        child.executableURL = URL(fileURLWithPath: (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0])
        child.arguments = CommandLine.arguments.dropFirst().filter { $0 != "--detach" }.reduce(into: [String]()) { args, a in
            // --log-file and its value belong to this process only.
            if args.last == "--log-file" { args.removeLast(); return }
            if a.hasPrefix("--log-file=") { return }
            args.append(a)
        }
        var env = ProcessInfo.processInfo.environment
        env[marker] = "1"
        child.environment = env
        child.standardInput = FileHandle.nullDevice
        child.standardOutput = output
        child.standardError = output
        try child.run()

        let discovery = loaded.stateDir + "/gateway.json"
        let deadline = ContinuousClock.now + .seconds(120)
        while ContinuousClock.now < deadline {
            if !child.isRunning {
                let tail = (try? String(contentsOfFile: log, encoding: .utf8)).map { String($0.utf8.dropFirst(Int(offset))) ?? "" } ?? ""
                FileHandle.standardError.write(Data(tail.utf8))
                throw CLIFailure("the gateway exited with status \(child.terminationStatus) (log: \(log))")
            }
            if let data = FileManager.default.contents(atPath: discovery),
               let info = try? JSONDecoder().decode(Discovery.self, from: data), info.pid == child.processIdentifier {
                if json {
                    let fields: JSONValue = ["pid": .number(Double(info.pid)), "url": .string(info.url), "log": .string(log)]
                    print(fields.jsonText)
                } else {
                    print("gateway started: pid \(info.pid), \(info.url), log \(log)")
                }
                return
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw CLIFailure("the gateway (pid \(child.processIdentifier)) did not answer within 120 s; see \(log)")
    }
}
