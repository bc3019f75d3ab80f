import ArgumentParser
import Foundation
import SkelmClient
import Workflow

#if canImport(Glibc)
import Glibc
#endif

struct GatewayStatus: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "status", abstract: "Say whether the gateway is running, and how it is.")
    @Flag(help: "Print JSON.") var json = false
    @OptionGroup var client: ClientOptions

    func run() async throws {
        let gateway = try client.client()
        let reply: GatewayClient.Reply
        do { reply = try await gateway.get("/health") } catch {
            throw CLIFailure("\(error)")
        }
        guard reply.status == 200, let h = reply.json else { throw Output.fail(reply) }
        if json { return Output.printJSON(reply.body) }
        print("running at \(gateway.display), version \(h["version"]?.stringValue ?? "?"), up \(h["uptimeSeconds"].map(\.jsonText) ?? "?") s")
        print("workers: \(h["workers"].map(\.jsonText) ?? "")")
        print("runs:    \(h["runs"].map(\.jsonText) ?? "")")
    }
}

struct GatewayStop: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "stop", abstract: "Ask the running gateway to drain and stop (SIGTERM), and wait for it.")
    @OptionGroup var config: ConfigOptions
    @Option(help: "Seconds to wait for it to exit.") var wait = 60

    func run() async throws {
        let pid = try runningGatewayPid(stateDir: config.load().stateDir)
        guard kill(pid_t(pid), SIGTERM) == 0 else { throw CLIFailure("cannot signal pid \(pid): \(String(cString: strerror(errno)))") }
        for _ in 0..<(wait * 10) {
            if kill(pid_t(pid), 0) != 0 { return print("stopped") }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw CLIFailure("gateway pid \(pid) still running after \(wait) s")
    }
}

struct GatewayReload: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reload", abstract: "Ask the running gateway to re-read its config and workflows (SIGHUP).")
    @OptionGroup var config: ConfigOptions

    func run() async throws {
        let pid = try runningGatewayPid(stateDir: config.load().stateDir)
        guard kill(pid_t(pid), SIGHUP) == 0 else { throw CLIFailure("cannot signal pid \(pid): \(String(cString: strerror(errno)))") }
        print("reload requested (config checked locally: ok)")
    }
}

/// The pid in the running gateway's discovery file.
func runningGatewayPid(stateDir: String) throws -> Int32 {
    let file = stateDir + "/gateway.json"
    guard let data = FileManager.default.contents(atPath: file),
          let info = try? JSONDecoder().decode(Discovery.self, from: data) else {
        throw CLIFailure("no running gateway found (no \(file))")
    }
    return info.pid
}
