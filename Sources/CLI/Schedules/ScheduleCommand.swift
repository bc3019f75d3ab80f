import ArgumentParser
import Foundation
import SkelmClient
import Workflow

struct ScheduleCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "schedule", abstract: "Triggers and schedules: list, add, remove, fire, pause, unpause, preview.",
        subcommands: [ScheduleList.self, ScheduleAdd.self, ScheduleRemove.self, ScheduleFire.self, SchedulePause.Pause.self,
                      SchedulePause.Unpause.self, ScheduleNext.self])
}

struct ScheduleList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "Every trigger (declared and operator schedules).")
    @Option(help: "Only this workflow's triggers.") var workflow: String?
    @Option(help: "Only this kind (cron, interval, at, webhook, poll, queue, file-watch, manual).") var kind: String?
    @Flag(help: "Print JSON.") var json = false
    @OptionGroup var client: ClientOptions

    func run() async throws {
        var query: [String] = []
        if let workflow { query.append("workflow=\(workflow)") }
        if let kind { query.append("kind=\(kind)") }
        let reply = try await client.client().get("/triggers" + (query.isEmpty ? "" : "?" + query.joined(separator: "&")))
        guard reply.status == 200 else { throw Output.fail(reply) }
        if json { return Output.printJSON(reply.body) }
        guard case let .array(list)? = reply.json?["triggers"] else { return }
        Output.table(["ID", "KIND", "STATE", "FIRED", "INFLIGHT", "QUEUED", "DROPPED", "NEXT", "LAST"], list.map { t in
            [t["id"]?.stringValue ?? "", t["kind"]?.stringValue ?? "", t["state"]?.stringValue ?? "",
             t["fired"]?.jsonText ?? "0", t["inflight"]?.jsonText ?? "0", t["queueDepth"]?.jsonText ?? "0", t["dropped"]?.jsonText ?? "0",
             t["nextFireAt"]?.stringValue ?? "-", t["lastOutcome"]?.stringValue ?? "-"]
        })
    }
}

struct ScheduleAdd: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "add", abstract: "Add an operator schedule (kept until removed).",
        discussion: "Exactly one of --cron, --every or --at. Example: skelm schedule add nightly-report --cron '0 2 * * *' --tz Europe/Berlin")
    @Argument(help: "The workflow it runs.") var workflow: String
    @Option(help: "A cron expression (5 fields, or 6 with seconds first).") var cron: String?
    @Option(help: "An interval: 30s, 5m, 1h30m.") var every: String?
    @Option(help: "A one-shot ISO-8601 instant.") var at: String?
    @Option(help: "IANA time zone for --cron and --at (default UTC).") var tz: String?
    @Option(help: "Random delay up to this long for --every.") var jitter: String?
    @Option(help: "The runs' input, as JSON.") var input: String?
    @Option(help: "skip, buffer_one, buffer_all, cancel_other or allow_all.") var overlap: String?
    @Option(name: .customLong("catch-up"), help: "none, one or all.") var catchUp: String?
    @Option(name: .customLong("catch-up-window"), help: "Missed slots older than this are not caught up (e.g. 6h).") var catchUpWindow: String?
    @Flag(help: "Print JSON.") var json = false
    @OptionGroup var client: ClientOptions

    func run() async throws {
        var body: [String: JSONValue] = ["workflow": .string(workflow)]
        for (key, value) in [("cron", cron), ("every", every), ("at", at), ("tz", tz), ("jitter", jitter), ("overlap", overlap),
                             ("catchUp", catchUp), ("catchUpWindow", catchUpWindow)] {
            if let value { body[key] = .string(value) }
        }
        if let input {
            guard let value = JSONValue.parse(input) else { throw ValidationError("--input is not valid JSON") }
            body["input"] = value
        }
        let reply = try await client.client().post("/schedules", json: .object(body))
        guard reply.status == 201 else { throw Output.fail(reply) }
        if json { return Output.printJSON(reply.body) }
        var upcoming: [String] = []
        if case let .array(times)? = reply.json?["upcoming"] { upcoming = times.compactMap(\.stringValue) }
        print(Output.safe("\(reply.json?["id"]?.stringValue ?? "?") added; next: \(upcoming.prefix(3).joined(separator: ", "))"))
    }
}

struct ScheduleRemove: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "rm", abstract: "Remove an operator schedule.")
    @Argument(help: "Schedule id (sch_…).") var id: String
    @OptionGroup var client: ClientOptions

    func run() async throws {
        let reply = try await client.client().send(.DELETE, "/schedules/\(id)")
        guard reply.status == 200 else { throw Output.fail(reply) }
        print(Output.safe("\(id) removed"))
    }
}

struct ScheduleFire: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "fire", abstract: "Fire a trigger now (through its overlap policy).")
    @Argument(help: "Trigger id.") var id: String
    @Option(help: "The run's input, as JSON (default: the trigger's).") var input: String?
    @Option(help: "Override the overlap policy for this fire (e.g. allow_all).") var overlap: String?
    @Flag(help: "Print JSON.") var json = false
    @OptionGroup var client: ClientOptions

    func run() async throws {
        var body: [String: JSONValue] = [:]
        if let input {
            guard let value = JSONValue.parse(input) else { throw ValidationError("--input is not valid JSON") }
            body["input"] = value
        }
        if let overlap { body["overlap"] = .string(overlap) }
        let reply = try await client.client().post("/triggers/\(id)/fire", json: .object(body))
        guard reply.status == 202 else { throw Output.fail(reply) }
        if json { return Output.printJSON(reply.body) }
        print(Output.safe("\(id) \(reply.json?["outcome"]?.stringValue ?? "?")" + (reply.json?["runId"]?.stringValue.map { ": \($0)" } ?? "")))
    }
}

enum SchedulePause {
    struct Options: ParsableArguments {
        @Argument(help: "Trigger id.") var id: String
        @Option(help: "Why (shown on the trigger, recorded in the audit chain).") var note: String?
        @OptionGroup var client: ClientOptions

        func send(_ verb: String) async throws {
            var body: [String: JSONValue] = [:]
            if let note { body["note"] = .string(note) }
            let reply = try await client.client().post("/triggers/\(id)/\(verb)", json: .object(body))
            guard reply.status == 200 else { throw Output.fail(reply) }
            print(Output.safe("\(id) \(reply.json?["state"]?.stringValue ?? "?")"))
        }
    }

    struct Pause: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "pause", abstract: "Pause a trigger: nothing fires until unpaused.")
        @OptionGroup var options: Options
        func run() async throws { try await options.send("pause") }
    }

    struct Unpause: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "unpause", abstract: "Unpause: time-based triggers realign to their next slot.")
        @OptionGroup var options: Options
        func run() async throws { try await options.send("unpause") }
    }
}

struct ScheduleNext: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "next", abstract: "The next fire times of a trigger.")
    @Argument(help: "Trigger id.") var id: String
    @Option(name: .short, help: "How many.") var n = 5
    @OptionGroup var client: ClientOptions

    func run() async throws {
        let reply = try await client.client().get("/triggers/\(id)?upcoming=\(n)")
        guard reply.status == 200 else { throw Output.fail(reply) }
        guard case let .array(upcoming)? = reply.json?["upcoming"] else { return }
        for t in upcoming { print(Output.safe(t.stringValue ?? "")) }
    }
}
