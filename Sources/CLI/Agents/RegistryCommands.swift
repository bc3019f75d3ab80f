import ArgumentParser
import Foundation
import SkelmClient
import Workflow

/// `skelm agents|mcp|skills`: what config registers, as the gateway resolved it.
struct AgentsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "agents", abstract: "Inspect the coding agents config registers.",
                                                    subcommands: [AgentsList.self, AgentsStatus.self])
}

struct AgentsList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List agents: id, protocol, lifecycle, program.")
    @Flag(help: "Print JSON.") var json = false
    @OptionGroup var client: ClientOptions

    func run() async throws {
        let reply = try await client.client().get("/v1/registry/agents")
        guard reply.status == 200 else { throw Output.fail(reply) }
        if json { return Output.printJSON(reply.body) }
        Output.table(["ID", "PROTOCOL", "LIFECYCLE", "PROGRAM"], (reply.json?["agents"].list ?? []).map { a in
            [a["id"]?.stringValue ?? "", a["protocol"]?.stringValue ?? "", a["lifecycle"]?.stringValue ?? "",
             a["program"]?.stringValue ?? "unresolved: " + (a["error"]?.stringValue ?? "")]
        })
    }
}

struct MCPCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "mcp", abstract: "Inspect the MCP servers config registers.",
                                                    subcommands: [MCPList.self, MCPToolsCommand.self, MCPStatus.self])
}

struct MCPList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List MCP servers: id, transport, lifecycle, program.")
    @Flag(help: "Print JSON.") var json = false
    @OptionGroup var client: ClientOptions

    func run() async throws {
        let reply = try await client.client().get("/v1/registry/mcp-servers")
        guard reply.status == 200 else { throw Output.fail(reply) }
        if json { return Output.printJSON(reply.body) }
        Output.table(["ID", "TRANSPORT", "LIFECYCLE", "PROGRAM"], (reply.json?["mcpServers"].list ?? []).map { s in
            [s["id"]?.stringValue ?? "", s["transport"]?.stringValue ?? "", s["lifecycle"]?.stringValue ?? "",
             s["program"]?.stringValue ?? "unresolved: " + (s["error"]?.stringValue ?? "")]
        })
    }
}

struct MCPToolsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "tools", abstract: "List a server's tools (started in a sandboxed worker, then cached).")
    @Argument(help: "The server's id.") var id: String
    @Flag(help: "Ask the server again instead of using the cached list.") var refresh = false
    @Flag(help: "Print JSON.") var json = false
    @OptionGroup var client: ClientOptions

    func run() async throws {
        let path = "/v1/registry/mcp-servers/\(id.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed) ?? id)/tools"
        let reply = refresh ? try await client.client().post(path + "/refresh") : try await client.client().get(path)
        guard reply.status == 200 else { throw Output.fail(reply) }
        if json { return Output.printJSON(reply.body) }
        Output.table(["TOOL", "DESCRIPTION"], (reply.json?["tools"].list ?? []).map { t in
            [t["name"]?.stringValue ?? "", String((t["description"]?.stringValue ?? "").split(separator: "\n").first ?? "")]
        })
    }
}

struct SkillsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "skills", abstract: "Inspect the skills in skills.dirs.",
                                                    subcommands: [SkillsList.self, SkillsShow.self])
}

struct SkillsList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List skills: name, description, folder; and folders that could not be read.")
    @Flag(help: "Print JSON.") var json = false
    @OptionGroup var client: ClientOptions

    func run() async throws {
        let reply = try await client.client().get("/v1/registry/skills")
        guard reply.status == 200 else { throw Output.fail(reply) }
        if json { return Output.printJSON(reply.body) }
        Output.table(["NAME", "DESCRIPTION", "FOLDER"], (reply.json?["skills"].list ?? []).map { s in
            [s["name"]?.stringValue ?? "", s["description"]?.stringValue ?? "", s["directory"]?.stringValue ?? ""]
        })
        for p in reply.json?["problems"].list ?? [] {
            print(Output.safe("skipped \(p["directory"]?.stringValue ?? ""): \(p["problem"]?.stringValue ?? "")"))
        }
    }
}

struct SkillsShow: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "show", abstract: "Print a skill's SKILL.md.")
    @Argument(help: "The skill's name.") var name: String
    @Flag(help: "Print JSON.") var json = false
    @OptionGroup var client: ClientOptions

    func run() async throws {
        let reply = try await client.client().get("/v1/registry/skills/\(name.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed) ?? name)")
        guard reply.status == 200 else { throw Output.fail(reply) }
        if json { return Output.printJSON(reply.body) }
        print(Output.safe(reply.json?["text"]?.stringValue ?? ""))
    }
}
