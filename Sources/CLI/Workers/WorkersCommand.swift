import ArgumentParser
import Foundation
import SkelmClient
import Workflow

struct WorkersCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "workers", abstract: "Inspect the worker pool.", subcommands: [WorkersList.self, WorkersInspect.self, WorkersDrain.self])
}

struct WorkersList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List live workers: pid, state, job, age, sandbox layers.")
    @Flag(help: "Print JSON.") var json = false
    @OptionGroup var client: ClientOptions

    func run() async throws {
        let reply = try await client.client().get("/v1/workers")
        guard reply.status == 200 else { throw Output.fail(reply) }
        if json { return Output.printJSON(reply.body) }
        guard let pool = reply.json, case let .array(workers)? = pool["workers"] else { return }
        Output.table(["PID", "UID", "STATE", "JOB", "AGE", "SANDBOX"], workers.map { w in
            var age = ""
            if case let .number(s)? = w["ageSeconds"] { age = s < 120 ? "\(Int(s))s" : "\(Int(s / 60))m" }
            let layers = (w["layers"].flatMap { if case let .array(a) = $0 { a.compactMap(\.stringValue) } else { nil } } ?? []).joined(separator: ",")
            return [w["pid"].map(\.jsonText) ?? "", w["uid"].map(\.jsonText) ?? "", w["state"]?.stringValue ?? "",
                    w["jobId"]?.stringValue ?? "-", age, layers]
        })
        print("live \(pool["live"].map(\.jsonText) ?? "0"), idle \(pool["idle"].map(\.jsonText) ?? "0"), busy \(pool["busy"].map(\.jsonText) ?? "0") (min spare \(pool["minSpare"].map(\.jsonText) ?? "?"), max \(pool["max"].map(\.jsonText) ?? "?"))")
        if let spawn = pool["spawn"] {
            if case .string("template")? = spawn["mode"], let pid = spawn["templatePid"].map(\.jsonText) {
                print("spawn: forked from worker template pid \(pid) (generation \(spawn["templateGeneration"].map(\.jsonText) ?? "?"), "
                      + "\(spawn["templateSpawned"].map(\.jsonText) ?? "0") of \(spawn["templateRecycleAfter"].map(\.jsonText) ?? "?") forks)")
            } else if case let .string(mode)? = spawn["mode"] {
                print("spawn: \(mode)")
            }
        }
    }
}

struct WorkersInspect: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "inspect", abstract: "One worker: uid, state, job, age, sandbox layers.")
    @Argument(help: "The worker's pid (from `skelm workers list`).") var pid: Int32
    @Flag(help: "Print JSON.") var json = false
    @OptionGroup var client: ClientOptions

    func run() async throws {
        let reply = try await client.client().get("/v1/workers/\(pid)")
        guard reply.status == 200, let w = reply.json else { throw Output.fail(reply) }
        if json { return Output.printJSON(reply.body) }
        let worker = w["worker"] ?? w
        if case let .object(fields) = worker {
            for (k, v) in fields.sorted(by: { $0.key < $1.key }) { print(Output.safe("\(k.padding(toLength: 12, withPad: " ", startingAt: 0)) \(v.stringValue ?? v.jsonText)")) }
        }
    }
}

struct WorkersDrain: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "drain", abstract: "Retire a worker: an idle one now, a busy one once its job ends (the pool replaces it).")
    @Argument(help: "The worker's pid.") var pid: Int32
    @Flag(help: "Print JSON.") var json = false
    @OptionGroup var client: ClientOptions

    func run() async throws {
        let reply = try await client.client().post("/v1/workers/\(pid)/drain")
        guard reply.status == 200 else { throw Output.fail(reply) }
        if json { return Output.printJSON(reply.body) }
        print("draining worker \(pid)")
    }
}
