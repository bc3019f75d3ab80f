import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Runs the real `skelm` binary and collects what it printed.
func skelm(_ arguments: [String], environment: [String: String] = [:]) throws -> (status: Int32, stdout: String, stderr: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: skelmBinary)
    process.arguments = arguments
    var env = ProcessInfo.processInfo.environment
    env.merge(environment) { $1 }
    process.environment = env
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    let o = out.fileHandleForReading.readDataToEndOfFile()
    let e = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
}

@Suite("The skelm binary")
struct CLITests {
    @Test("sandbox exec runs a command in a worker and passes its output and status through")
    func sandboxExec() throws {
        let state = temporaryStateDir()
        defer { try? FileManager.default.removeItem(atPath: state) }
        let r = try skelm(["sandbox", "exec", "--", "sh", "-c", "echo hello; echo oops >&2; exit 4"],
                          environment: ["SKELM_STATE_DIR": state])
        #expect(r.status == 4)
        #expect(r.stdout == "hello\n")
        #expect(r.stderr.contains("oops"))
        #expect(r.stderr.contains("exited with status 4"))
    }

    @Test("sandbox exec --json reports a seccomp kill as a violation, exit 125")
    func sandboxExecViolation() throws {
        let state = temporaryStateDir()
        defer { try? FileManager.default.removeItem(atPath: state) }
        let r = try skelm(["sandbox", "exec", "--json", "--", "python3", "-c", "import ctypes; ctypes.CDLL(None).unshare(0x10000000)"],
                          environment: ["SKELM_STATE_DIR": state])
        #expect(r.status == 125)
        let json = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
        #expect(json?["violation"] as? Bool == true)
        #expect((json?["failure"] as? String)?.contains("SIGSYS") == true)
    }

    @Test("doctor shows the host's support and a real worker's layers")
    func doctor() throws {
        let state = temporaryStateDir()
        defer { try? FileManager.default.removeItem(atPath: state) }
        let r = try skelm(["doctor", "--json"], environment: ["SKELM_STATE_DIR": state])
        #expect(r.status == 0, "\(r.stdout) \(r.stderr)")
        let json = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
        let host = json?["host"] as? [String: Any]
        #expect((host?["landlockABI"] as? Int ?? 0) > 0)
        let worker = json?["worker"] as? [String: Any]
        #expect((worker?["active"] as? [String])?.contains("seccomp") == true)
        #expect(json?["ok"] as? Bool == true)
    }

    @Test("a bad config stops a command with exit 2 and names the key")
    func badConfig() throws {
        let state = temporaryStateDir()
        defer { try? FileManager.default.removeItem(atPath: state) }
        let config = state + "/skelm.config.yaml"
        try "workers:\n  minSpare: 0\n  max: 0\n".write(toFile: config, atomically: true, encoding: .utf8)
        let r = try skelm(["doctor", "--config", config])
        #expect(r.status == 2)
        #expect(r.stderr.contains("workers.max: must be at least 1"))
    }

    @Test("gateway start keeps warm workers and drains on SIGTERM, exiting 0")
    func gatewayStartStop() async throws {
        let state = temporaryStateDir()
        defer { try? FileManager.default.removeItem(atPath: state) }
        let config = state + "/skelm.config.yaml"
        try "stateDir: \(state)\nserver: { port: 0 }\nworkers:\n  minSpare: 2\n  max: 4\n".write(toFile: config, atomically: true, encoding: .utf8)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: skelmBinary)
        process.arguments = ["gateway", "start", "--config", config]
        let err = Pipe()
        process.standardError = err
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        let gateway = process.processIdentifier
        // Two warm workers appear as children of the gateway.
        let warm = await waitUntil(.seconds(15)) { childCount(of: gateway) >= 2 }
        #expect(warm)
        let children = childPids(of: gateway)
        kill(gateway, SIGTERM)
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        // No worker outlives its gateway.
        #expect(await waitUntil { children.allSatisfy { kill($0, 0) != 0 } })
        let log = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(log.contains("gateway started"))
        #expect(log.contains("gateway stopped"))
    }
}

extension CLITests {
    @Test("workers die with a gateway killed by SIGKILL (no orphans)")
    func noOrphans() async throws {
        let state = temporaryStateDir()
        defer { try? FileManager.default.removeItem(atPath: state) }
        let config = state + "/skelm.config.yaml"
        try "stateDir: \(state)\nserver: { port: 0 }\nworkers:\n  minSpare: 3\n  max: 4\n".write(toFile: config, atomically: true, encoding: .utf8)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: skelmBinary)
        process.arguments = ["gateway", "start", "--config", config]
        // Not the test run's output: a worker that outlived the gateway would hold it open.
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        let gateway = process.processIdentifier
        #expect(await waitUntil(.seconds(15)) { childCount(of: gateway) >= 3 })
        let workers = childPids(of: gateway)
        kill(gateway, SIGKILL)
        process.waitUntilExit()
        #expect(await waitUntil { workers.allSatisfy { kill($0, 0) != 0 } })
    }
}

func childPids(of parent: Int32) -> [Int32] {
    let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
    return entries.compactMap { Int32($0) }.filter { pid in
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return false }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        return fields.count > 2 && Int32(fields[2]) == parent && fields[0] != "Z"
    }
}

func childCount(of parent: Int32) -> Int { childPids(of: parent).count }
