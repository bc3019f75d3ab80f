import ArgumentParser
import ControlPlane
import Foundation
import SkelmClient
import Workflow

struct WorkflowsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "workflows", abstract: "List, validate, register and unregister workflows.",
        subcommands: [WorkflowsList.self, WorkflowsValidate.self, WorkflowsRegister.self, WorkflowsUnregister.self])
}

struct WorkflowsList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List the gateway's workflows, valid or not.")
    @Flag(help: "Print JSON.") var json = false
    @OptionGroup var client: ClientOptions

    func run() async throws {
        let reply = try await client.client().get("/v1/workflows")
        guard reply.status == 200 else { throw Output.fail(reply) }
        if json { return Output.printJSON(reply.body) }
        guard case let .array(list)? = reply.json?["workflows"] else { return }
        Output.table(["ID", "VALID", "STEPS", "SOURCE", "DESCRIPTION"], list.map { w in
            [w["id"]?.stringValue ?? "", w["valid"] == .bool(true) ? "yes" : "NO", w["steps"].map(\.jsonText) ?? "-",
             WorkflowsRegister.describe(w["source"]), w["description"]?.stringValue ?? ""]
        })
        for w in list where w["valid"] != .bool(true) {
            if case let .array(issues)? = w["issues"] {
                for i in issues { print("\(i["file"]?.stringValue ?? ""):\(i["line"].map(\.jsonText) ?? "?"): \(i["path"]?.stringValue ?? ""): \(i["message"]?.stringValue ?? "")") }
            }
        }
    }
}

/// Checks workflow files locally, without a gateway: every problem with its path and line.
struct WorkflowsValidate: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "validate", abstract: "Validate workflow files; exit 1 if any is invalid.")
    @Argument(help: "Workflow files (*.workflow.yaml, .yml or .json).") var files: [String]
    @Flag(help: "Print JSON: one verdict per file, with every issue.") var json = false

    func run() throws {
        struct Verdict: Encodable {
            let file: String
            let valid: Bool
            let id: String?
            let issues: [WorkflowIssue]
        }
        var verdicts: [Verdict] = []
        for file in files {
            switch WorkflowLoader.load(file: file) {
            case let .valid(def):
                verdicts.append(Verdict(file: file, valid: true, id: def.id, issues: []))
                if !json { print("\(file): ok (\(def.id), \(def.steps.count) step\(def.steps.count == 1 ? "" : "s"))") }
            case let .invalid(id, issues):
                verdicts.append(Verdict(file: file, valid: false, id: id, issues: issues))
                if !json { issues.forEach { print($0) } }
            }
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            print(String(decoding: try encoder.encode(verdicts), as: UTF8.self))
        }
        if verdicts.contains(where: { !$0.valid }) { throw ExitCode(1) }
    }
}
