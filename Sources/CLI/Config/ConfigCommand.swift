import ArgumentParser
import Foundation
import SkelmClient
import Workflow

struct ConfigCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config", abstract: "Show the running config; change its hot keys.",
        subcommands: [ConfigShow.self, ConfigSet.self])
}

struct ConfigShow: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show", abstract: "The running gateway's config, one key per line (no secret values: it holds none).")
    @Argument(help: "Only keys starting with this (e.g. server).") var prefix: String?
    @Flag(help: "Print JSON.") var json = false
    @OptionGroup var client: ClientOptions

    func run() async throws {
        let reply = try await client.client().get("/v1/config")
        guard reply.status == 200, case let .object(config)? = reply.json?["config"] else { throw Output.fail(reply) }
        if json { return Output.printJSON(reply.body) }
        for (key, value) in config.sorted(by: { $0.key < $1.key }) where prefix.map({ key == $0 || key.hasPrefix($0 + ".") || key.hasPrefix($0 + "[") }) ?? true {
            print(Output.safe("\(key) = \(value.stringValue ?? value.jsonText)"))
        }
        if case let .array(hot)? = reply.json?["hotKeys"] {
            print(Output.safe("# hot keys (skelm config set): " + hot.compactMap(\.stringValue).joined(separator: ", ")))
        }
    }
}

struct ConfigSet: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "set", abstract: "Change hot keys of the running gateway: skelm config set server.maxConcurrentRuns=16",
        discussion: """
            Applied at once and audited (config.patched); not written to the config file, so the \
            file's value returns when the file changes or the gateway restarts. Keys that are not \
            hot are refused: edit the file and run `skelm gateway reload`.
            Exit status: 0 applied, 1 refused (nothing changed).
            """)
    @Argument(help: "key=value pairs (integers).") var assignments: [String]
    @Flag(help: "Print JSON.") var json = false
    @OptionGroup var client: ClientOptions

    func validate() throws {
        guard !assignments.isEmpty else { throw ValidationError("name at least one key=value") }
        for a in assignments where !a.contains("=") { throw ValidationError("'\(a)' is not key=value") }
    }

    func run() async throws {
        var body: [String: JSONValue] = [:]
        for a in assignments {
            let (key, raw) = (String(a.prefix { $0 != "=" }), String(a.drop { $0 != "=" }.dropFirst()))
            body[key] = (try? JSONDecoder().decode(JSONValue.self, from: Data(raw.utf8))) ?? .string(raw)
        }
        let reply = try await client.client().send(.PATCH, "/v1/config", body: try JSONEncoder().encode(JSONValue.object(body)),
                                                   headers: [("Content-Type", "application/json")])
        guard reply.status == 200, let r = reply.json else { throw Output.fail(reply) }
        if json { return Output.printJSON(reply.body) }
        ReloadOutput.print(r)
    }
}
