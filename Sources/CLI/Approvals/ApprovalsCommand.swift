import ArgumentParser
import Foundation
import SkelmClient
import Workflow

struct ApprovalsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "approvals", abstract: "List and decide approvals.",
        subcommands: [ApprovalsList.self, ApprovalsDecide.Approve.self, ApprovalsDecide.Deny.self])
}

struct ApprovalsList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "Approvals, newest first (pending by default).")
    @Option(help: "pending, approved, denied, expired, cancelled or all.") var status = "pending"
    @Option(help: "Only this run's approvals.") var run: String?
    @Flag(help: "Print JSON.") var json = false
    @OptionGroup var client: ClientOptions

    func run() async throws {
        var path = "/approvals?status=\(status)"
        if let run { path += "&run=\(run)" }
        let reply = try await client.client().get(path)
        guard reply.status == 200 else { throw Output.fail(reply) }
        if json { return Output.printJSON(reply.body) }
        guard case let .array(list)? = reply.json?["approvals"] else { return }
        Output.table(["ID", "STATUS", "RUN", "STEP", "EXPIRES", "MESSAGE"], list.map { a in
            [a["id"]?.stringValue ?? "", a["status"]?.stringValue ?? "", a["runId"]?.stringValue ?? "", a["step"]?.stringValue ?? "",
             a["expiresAt"]?.stringValue ?? "-", a["message"]?.stringValue ?? ""]
        })
    }
}

enum ApprovalsDecide {
    struct Options: ParsableArguments {
        @Argument(help: "Approval id.") var id: String
        @Option(help: "Why (recorded in the audit chain).") var reason: String?
        @Flag(help: "Print JSON.") var json = false
        @OptionGroup var client: ClientOptions

        /// Who decides is who the gateway authenticated (the Unix socket's peer,
        /// or the token's name): never a name the caller picks.
        func decide(_ verb: String) async throws {
            var body: [String: JSONValue] = [:]
            if let reason { body["reason"] = .string(reason) }
            let reply = try await client.client().post("/approvals/\(id)/\(verb)", json: .object(body))
            guard reply.status == 200 else { throw Output.fail(reply) }
            if json { return Output.printJSON(reply.body) }
            print(Output.safe("\(id) \(reply.json?["status"]?.stringValue ?? "") by \(reply.json?["decidedBy"]?.stringValue ?? "?")"))
        }
    }

    struct Approve: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "approve", abstract: "Approve: the run resumes in a fresh worker.")
        @OptionGroup var options: Options
        func run() async throws { try await options.decide("approve") }
    }

    struct Deny: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "deny", abstract: "Deny: the run fails.")
        @OptionGroup var options: Options
        func run() async throws { try await options.decide("deny") }
    }
}
