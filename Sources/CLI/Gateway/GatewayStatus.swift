import ArgumentParser
import ControlPlane
import Foundation
import SkelmClient
import Workflow

#if canImport(Glibc)
import Glibc
#endif

struct GatewayStatus: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status", abstract: "Say whether the gateway is running, and how it is.",
        discussion: "Exit status: 0 running (or paused, or draining), 3 not running, 1 it answered with an error.")
    @Flag(help: "Print JSON.") var json = false
    @OptionGroup var client: ClientOptions

    func run() async throws {
        let gateway: GatewayClient
        let reply: GatewayClient.Reply
        do {
            gateway = try client.client()
            reply = try await gateway.get("/gateway/status")
        } catch {
            if json { print(#"{"state": "stopped"}"#) }
            FileHandle.standardError.write(Data("skelm: not running: \(error)\n".utf8))
            throw ExitCode(3)
        }
        guard reply.status == 200, let s = reply.json else { throw Output.fail(reply) }
        if json { return Output.printJSON(reply.body) }
        let state = s["state"]?.stringValue ?? "?"
        print(Output.safe("state     \(state)" + (s["pause"]?["reason"]?.stringValue.map { " (\($0), by \(s["pause"]?["by"]?.stringValue ?? "?"))" } ?? "")))
        print(Output.safe("pid       \(s["pid"].map(\.jsonText) ?? "?"), version \(s["version"]?.stringValue ?? "?")"))
        print(Output.safe("url       \(s["url"]?.stringValue ?? "-")  socket \(s["socket"]?.stringValue ?? "-")"))
        print("uptime    \(Self.duration(s["uptimeSeconds"]))")
        print(Output.safe("config    \(s["configPath"]?.stringValue ?? "(defaults)")"))
        print(Output.safe("state dir \(s["stateDir"]?.stringValue ?? "?")"))
        let w = s["workers"], r = s["runs"]
        print("workers   \(w?["live"].map(\.jsonText) ?? "0") live, \(w?["idle"].map(\.jsonText) ?? "0") idle, \(w?["busy"].map(\.jsonText) ?? "0") busy (min spare \(w?["minSpare"].map(\.jsonText) ?? "?"), max \(w?["max"].map(\.jsonText) ?? "?"))")
        print("runs      \(r?["running"].map(\.jsonText) ?? "0") running of \(r?["maxConcurrent"].map(\.jsonText) ?? "?"), \(r?["queued"].map(\.jsonText) ?? "0") queued")
        let layers: [String] = (s["sandbox"]?["active"]).list.compactMap(\.stringValue)
        print("sandbox   \(layers.isEmpty ? "(no live worker)" : layers.joined(separator: ", "))")
    }

    static func duration(_ v: JSONValue?) -> String {
        guard case let .number(s)? = v else { return "?" }
        let t = Int(s)
        return t < 120 ? "\(t) s" : t < 7200 ? "\(t / 60) min" : t < 172_800 ? "\(t / 3600) h \(t % 3600 / 60) min" : "\(t / 86400) days"
    }
}

struct GatewayStop: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stop", abstract: "Drain and stop the running gateway (SIGTERM), and wait until it has exited.",
        discussion: "Exit status: 0 stopped, 1 still running after --timeout, 3 no gateway was running.")
    @OptionGroup var config: ConfigOptions
    @Option(help: "Seconds to wait for it to exit (its drain included).") var timeout = 60
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        guard let pid = runningGatewayPid(stateDir: try config.load().stateDir) else {
            print(json ? #"{"stopped": false, "running": false}"# : "not running")
            throw ExitCode(3)
        }
        guard kill(pid_t(pid), SIGTERM) == 0 else { throw CLIFailure("cannot signal pid \(pid): \(String(cString: strerror(errno)))") }
        for _ in 0..<(timeout * 10) {
            if kill(pid_t(pid), 0) != 0 { return print(json ? #"{"stopped": true, "pid": \#(pid)}"# : "stopped (pid \(pid))") }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw CLIFailure("gateway pid \(pid) still running after \(timeout) s (still draining? see its log)")
    }
}

struct GatewayReload: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reload", abstract: "Re-read the config and workflows; say what changed and what needs a restart.",
        discussion: "Exit status: 0 applied or unchanged, 1 the new config was rejected (the running one is kept).")
    @Flag(help: "Print JSON.") var json = false
    @OptionGroup var client: ClientOptions

    func run() async throws {
        let reply = try await client.client().post("/gateway/reload")
        guard reply.status == 200 || reply.status == 422, let r = reply.json else { throw Output.fail(reply) }
        if json { Output.printJSON(reply.body) } else { ReloadOutput.print(r) }
        if reply.status == 422 { throw ExitCode(1) }
    }
}

enum ReloadOutput {
    static func print(_ r: JSONValue) {
        switch r["outcome"]?.stringValue {
        case "rejected": Swift.print(Output.safe("rejected, the running config is kept: \(r["error"]?.stringValue ?? "")"))
        case "unchanged": Swift.print("config unchanged")
        default:
            for c in r["applied"].list { Swift.print(Output.safe("applied   \(c["key"]?.stringValue ?? ""): \(c["old"]?.stringValue ?? "-") -> \(c["new"]?.stringValue ?? "-")")) }
            for c in r["restartRequired"].list { Swift.print(Output.safe("restart   \(c["key"]?.stringValue ?? ""): \(c["new"]?.stringValue ?? "-") (running: \(c["old"]?.stringValue ?? "-"))")) }
        }
        if let w = r["workflows"], w != .null {
            Swift.print("workflows \(w["valid"].map(\.jsonText) ?? "0") valid, \(w["invalid"].map(\.jsonText) ?? "0") invalid")
        }
    }
}

struct GatewayPause: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pause", abstract: "Stop taking new runs (503 with the reason); running and queued runs carry on.",
        discussion: "The pause survives a restart until `skelm gateway resume`.")
    @Option(help: "Why, shown to every refused client.") var reason: String?
    @Flag(help: "Print JSON.") var json = false
    @OptionGroup var client: ClientOptions

    func run() async throws {
        let body: JSONValue = reason.map { .object(["reason": .string($0)]) } ?? .object([:])
        let reply = try await client.client().post("/gateway/pause", json: body)
        guard reply.status == 200 else { throw Output.fail(reply) }
        if json { return Output.printJSON(reply.body) }
        print(Output.safe("paused: \(reply.json?["pause"]?["reason"]?.stringValue ?? "")"))
    }
}

struct GatewayResume: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "resume", abstract: "Take new runs again after a pause.")
    @Flag(help: "Print JSON.") var json = false
    @OptionGroup var client: ClientOptions

    func run() async throws {
        let reply = try await client.client().post("/gateway/resume")
        guard reply.status == 200 else { throw Output.fail(reply) }
        if json { return Output.printJSON(reply.body) }
        print("running: new runs are taken")
    }
}

/// The pid of the gateway running on this state dir (it holds the state dir's
/// lock, starting or running); nil when none is.
func runningGatewayPid(stateDir: String) -> Int32? {
    StateLock.holder(stateDir: stateDir)
}
