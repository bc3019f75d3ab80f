import ArgumentParser
import Foundation
import MultipartKit
import NIOCore
import NIOHTTP1
import SkelmClient
import Workflow

struct WorkflowsRegister: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "register", abstract: "Register a workflow file, a directory of them, or a .zip of them (admin).",
        discussion: """
            A file or directory is registered by path: it must lie under the config file's directory or \
            workflows.allowedRegistrationDirs, and the gateway reads it again at every reload. A .zip is \
            uploaded and kept in the state dir. Every workflow in it must be valid, or nothing is registered.
            Exit status: 0 registered, 1 refused (the reason, and each problem with its line, on stderr).
            """)
    @Argument(help: "A *.workflow.yaml|yml|json file, a directory of them, or a .zip.") var source: String
    @Option(help: "Replace the registration that defines this workflow id (PUT) instead of adding one.") var replace: String?
    @Flag(help: "Print JSON.") var json = false
    @OptionGroup var client: ClientOptions

    func run() async throws {
        let gateway = try client.client()
        let method: HTTPMethod = replace == nil ? .POST : .PUT
        let path = replace.map { "/v1/workflows/\($0.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed) ?? $0)" } ?? "/v1/workflows/register"
        let reply: GatewayClient.Reply
        if source.hasSuffix(".zip") {
            guard let data = FileManager.default.contents(atPath: source) else { throw CLIFailure("cannot read \(source)") }
            var headers = HTTPHeaders()
            headers.add(name: "Content-Disposition", value: "form-data; name=\"file\"; filename=\"\(URL(fileURLWithPath: source).lastPathComponent)\"")
            headers.add(name: "Content-Type", value: "application/zip")
            let boundary = "skelm-" + UUID().uuidString
            var body = ByteBuffer()
            try MultipartSerializer().serialize(parts: [MultipartPart(headers: headers, body: ByteBuffer(bytes: data))], boundary: boundary, into: &body)
            reply = try await gateway.send(method, path, body: Data(body.readableBytesView),
                                           headers: [("Content-Type", "multipart/form-data; boundary=\(boundary)")])
        } else {
            // The gateway resolves a relative path against its config file's directory,
            // not this shell's: send it absolute.
            let absolute = URL(fileURLWithPath: source).standardizedFileURL.path
            let body = JSONValue.object(["source": .object(["type": "path", "path": .string(absolute)])])
            reply = try await gateway.send(method, path, body: try JSONEncoder().encode(body), headers: [("Content-Type", "application/json")])
        }
        guard reply.status == 200 || reply.status == 201 else {
            if case let .array(issues)? = reply.json?["issues"] {
                for i in issues {
                    FileHandle.standardError.write(Data(Output.safe("\(i["file"]?.stringValue ?? ""):\(i["line"].map(\.jsonText) ?? "?"): \(i["path"]?.stringValue ?? ""): \(i["message"]?.stringValue ?? "")\n").utf8))
                }
            }
            throw Output.fail(reply)
        }
        if json { return Output.printJSON(reply.body) }
        for w in (reply.json?["registered"]).list {
            print(Output.safe("registered \(w["id"]?.stringValue ?? "?") (\(Self.describe(w["source"])))"))
        }
    }

    static func describe(_ source: JSONValue?) -> String {
        switch source?["type"]?.stringValue {
        case "dir": "dir " + (source?["dir"]?.stringValue ?? "")
        case "path": "path " + (source?["path"]?.stringValue ?? "")
        case "upload": "upload " + String((source?["sha256"]?.stringValue ?? "").prefix(12))
        default: "-"
        }
    }
}

struct WorkflowsUnregister: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "unregister", abstract: "Remove a registered workflow (admin); runs already started keep their definition.",
        discussion: "Exit status: 0 removed, 1 refused (not registered, or defined by a config dir).")
    @Argument(help: "Workflow id.") var id: String
    @Flag(help: "Print JSON.") var json = false
    @OptionGroup var client: ClientOptions

    func run() async throws {
        let reply = try await client.client().send(.DELETE, "/v1/workflows/\(id.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed) ?? id)")
        guard reply.status == 204 else { throw Output.fail(reply) }
        if json { return print(#"{"unregistered": \#(JSONValue.string(id).jsonText)}"#) }
        print(Output.safe("unregistered \(id)"))
    }
}
