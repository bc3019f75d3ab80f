import ArgumentParser
import Foundation
import SkelmClient
import Workflow

struct RunsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "runs", abstract: "Inspect, cancel and resume runs.",
        subcommands: [RunsList.self, RunsShow.self, RunsEvents.self, RunsCancel.self, RunsResume.self])
}

struct RunsList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List runs, newest first.")
    @Option(help: "Only runs with this status (queued, running, succeeded, failed, cancelled).") var status: String?
    @Option(help: "Only runs of this workflow.") var workflow: String?
    @Option(help: "Only runs this trigger fired.") var trigger: String?
    @Option(help: "At most this many runs.") var limit = 20
    @Flag(help: "Print JSON.") var json = false
    @OptionGroup var client: ClientOptions

    func run() async throws {
        var query = ["limit=\(limit)"]
        if let status { query.append("status=\(status)") }
        if let workflow { query.append("workflow=\(workflow.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? workflow)") }
        if let trigger { query.append("trigger=\(trigger.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? trigger)") }
        let reply = try await client.client().get("/runs?" + query.joined(separator: "&"))
        guard reply.status == 200 else { throw Output.fail(reply) }
        if json { return Output.printJSON(reply.body) }
        guard case let .array(runs)? = reply.json?["runs"] else { return }
        Output.table(["ID", "WORKFLOW", "STATUS", "CREATED", "DURATION"], runs.map { r in
            var duration = "-"
            if case let .number(ms)? = r["durationMs"] { duration = ms < 1000 ? "\(Int(ms)) ms" : String(format: "%.1f s", ms / 1000) }
            return [r["id"]?.stringValue ?? "", r["workflow"]?.stringValue ?? "", r["status"]?.stringValue ?? "",
                    r["createdAt"]?.stringValue ?? "", duration]
        })
    }
}

struct RunsShow: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "show", abstract: "Show a run: status, steps, output, error, timings.")
    @Argument(help: "Run id.") var id: String
    @Flag(help: "Also list the run's events.") var events = false
    @Flag(help: "Print JSON.") var json = false
    @OptionGroup var client: ClientOptions

    func run() async throws {
        let gateway = try client.client()
        let reply = try await gateway.get("/runs/\(id)")
        guard reply.status == 200, let run = reply.json else { throw Output.fail(reply) }
        if json && !events { return Output.printJSON(reply.body) }
        if !json {
            print(Output.safe("run       \(id)"))
            print(Output.safe("workflow  \(run["workflow"]?.stringValue ?? "")"))
            print(Output.safe("status    \(run["status"]?.stringValue ?? "")"))
            print(Output.safe("created   \(run["createdAt"]?.stringValue ?? "")"))
            if let parent = run["parentRunId"]?.stringValue {
                print(Output.safe("parent    \(parent) (step \(run["parentStep"]?.stringValue ?? ""))"))
            }
            if case let .number(ms)? = run["durationMs"] { print("duration  \(Int(ms)) ms") }
            if case let .array(steps)? = run["steps"], !steps.isEmpty {
                print("steps:")
                for s in steps {
                    var ms = ""
                    if case let .number(d)? = s["durationMs"] { ms = " \(Int(d)) ms" }
                    let attempt = (s["attempt"].flatMap { if case let .number(n) = $0, n > 1 { " attempt \(Int(n))" } else { nil } }) ?? ""
                    print(Output.safe("  \(s["status"]?.stringValue ?? "")  \(s["path"]?.stringValue ?? "")\(attempt)\(ms)"))
                }
            }
            if case let .array(children)? = run["children"], !children.isEmpty {
                print("children:")
                for c in children {
                    print(Output.safe("  \(c["status"]?.stringValue ?? "")  \(c["id"]?.stringValue ?? "")  \(c["workflow"]?.stringValue ?? "") (step \(c["step"]?.stringValue ?? ""))"))
                }
            }
            if let output = run["output"], output != .null { print("output    \(output.jsonText)") }
            if let error = run["error"], error != .null {
                print(Output.safe("error     \(error["code"]?.stringValue ?? ""): \(error["message"]?.stringValue ?? "")"))
            }
        }
        if events {
            let ev = try await gateway.get("/runs/\(id)/events?limit=10000", headers: [("Accept", "application/json")])
            guard ev.status == 200 else { throw Output.fail(ev) }
            if json { return Output.printJSON(ev.body) }
            print("events:")
            if case let .array(list)? = ev.json?["events"] {
                for e in list {
                    let seq = e["seq"].map(\.jsonText) ?? ""
                    print(Output.safe("  \(seq)  \(e["at"]?.stringValue ?? "")  \(e["type"]?.stringValue ?? "")  \(e["step"]?.stringValue ?? "")  \(e["message"]?.stringValue ?? "")"))
                }
            }
        }
    }
}

struct RunsCancel: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "cancel", abstract: "Cancel a queued or running run (a finished run is left as it is).")
    @Argument(help: "Run id.") var id: String
    @Flag(help: "Print JSON.") var json = false
    @OptionGroup var client: ClientOptions

    func run() async throws {
        let reply = try await client.client().post("/runs/\(id)/cancel")
        guard reply.status == 200 else { throw Output.fail(reply) }
        if json { return Output.printJSON(reply.body) }
        print(Output.safe("\(id) \(reply.json?["status"]?.stringValue ?? "")"))
    }
}
