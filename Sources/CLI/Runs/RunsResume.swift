import ArgumentParser
import Foundation
import SkelmClient
import Workflow

/// `skelm runs resume ID --output JSON`: hands a parked run's `wait` step its output.
struct RunsResume: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "resume", abstract: "Give a run's wait step its output; the run goes on.",
        discussion: "The output is checked against the wait step's output schema. Name the step with --step when the run waits on several.")
    @Argument(help: "Run id.") var id: String
    @Option(help: "The step's output, as JSON (a bare word is taken as a string).") var output: String
    @Option(help: "The wait step's path, when the run waits on more than one.") var step: String?
    @Flag(help: "Print JSON.") var json = false
    @OptionGroup var client: ClientOptions

    func run() async throws {
        var body: [String: JSONValue] = ["output": JSONValue.parse(output) ?? .string(output)]
        if let step { body["step"] = .string(step) }
        let reply = try await client.client().post("/runs/\(id)/resume", json: .object(body))
        guard reply.status == 200 else { throw Output.fail(reply) }
        if json { return Output.printJSON(reply.body) }
        print(Output.safe("\(id) \(reply.json?["status"]?.stringValue ?? "")"))
    }
}
