import Foundation
import SkelmClient
import Testing
import Workflow

#if canImport(Glibc)
import Glibc
#endif

/// An agent reaches its model provider through its worker's relay: the
/// official openai SDK in the agent talks plain HTTP to the worker, and the
/// control plane adds the provider's key on the way out. The key is never in
/// the sandbox.
@Suite("Provider relay", .serialized, .enabled(if: Peers.available, "make peers installs the agents"))
final class ProviderRelayTests {
    static let key = "sk-relay-7f3e9a1c5b"
    let gw: TestGateway
    let chat: FixturePeer
    let dir: String
    let record: String

    init() async throws {
        dir = "/tmp/skelm-relay-\(UUID().uuidString.prefix(8).lowercased())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        record = dir + "/requests.jsonl"
        chat = try await FixturePeer.start("chat/chat_server.py", ["--record", record], environment: ["CHAT_API_KEY": Self.key],
                                           log: dir + "/chat.log")
        let agent = try Peers.scriptedAgent(in: dir + "/agents")
        try FileManager.default.createDirectory(atPath: dir + "/out", withIntermediateDirectories: true)
        chmod(dir, 0o755)
        chmod(dir + "/out", 0o777)
        gw = try TestGateway(workflows: [
            "relay.workflow.yaml": """
                id: relay
                steps:
                  - id: ask
                    permissions: { networkEgress: { allowHosts: ["127.0.0.1:\(chat.port)"] } }
                    agent: { agent: writer, prompt: "chat hello through the relay" }
                """,
            "linger.workflow.yaml": """
                id: linger
                steps:
                  - id: ask
                    permissions: { networkEgress: { allowHosts: ["127.0.0.1:\(chat.port)"] }, fsWrite: ["\(dir)/out"] }
                    agent: { agent: writer, prompt: "linger \(dir)/out/linger.txt" }
                  # The job (and its worker) outlives the agent's step, and so does the detached process.
                  - id: later
                    exec: { argv: [sleep, "5"] }
                """,
            "no-egress.workflow.yaml": """
                id: no-egress
                steps:
                  - id: ask
                    permissions: { networkEgress: { allowHosts: [] } }
                    agent: { agent: writer, prompt: "chat not allowed" }
                """,
        ], config: """
            server: { host: 127.0.0.1, port: 0 }
            workers: { minSpare: 1, max: 4, uidBase: UIDBASE, limits: { timeoutSeconds: 60, addressSpaceMB: 4096, workerAddressSpaceMB: 8192 } }
            defaults:
              permissions:
                allowedAgents: [writer]
                allowedExecutables: [sleep]
                fsWrite: ["\(dir)/out"]
                networkEgress: { allowHosts: ["127.0.0.1:\(chat.port)"] }
            secrets: { env: { prefix: SKELM_TEST_SECRET_ } }
            providers:
              local: { baseURL: "http://127.0.0.1:\(chat.port)/v1", model: stand-in-model, apiKeySecret: CHAT_KEY }
            agents:
              - id: writer
                command: \(agent)
                provider: local
            """)
        gw.environment = ["SKELM_TEST_SECRET_CHAT_KEY": Self.key]
        try await gw.start()
    }

    deinit {
        gw.cleanupLater()
        chat.stop()
        try? FileManager.default.removeItem(atPath: dir)
    }

    @Test("the agent's SDK reaches the provider through the relay; the provider sees the key, the agent holds only a token of its step's, for as many requests as its turn makes")
    func relayed() async throws {
        let done = try await gw.run("relay")
        #expect(done["status"] == "succeeded", "\(done)")
        let said = try #require(JSONValue.parse(done["output"]?.stringValue ?? ""), "\(done)")
        #expect(said["reply"] == "hello through the relay", "\(said)")
        #expect(said["again"] == "again", "a second request in the same turn: \(said)")
        #expect(said["unauthenticated"] == 401, "the relay answered a request without the step's token: \(said)")
        #expect(said["key"]?.stringValue != Self.key && (said["key"]?.stringValue?.count ?? 0) == 64)
        #expect(said["base"]?.stringValue?.hasPrefix("http://127.0.0.1:") == true)
        let seen = try String(contentsOfFile: record, encoding: .utf8)
        #expect(seen.contains("Bearer \(Self.key)"))
        #expect(!seen.contains("sneaked"), "a request without the token reached the provider")
        let id = try #require(done["id"]?.stringValue)
        let stored = String(decoding: try await gw.get("/runs/\(id)/events?limit=1000", headers: [("Accept", "application/json")]).body, as: UTF8.self)
        #expect(!stored.contains(Self.key))
        let relayed = (try await gw.get("/audit?action=provider.relayed").json?["entries"].list ?? []).filter { $0["runId"]?.stringValue == id }
        #expect(relayed.first?["details"]?["path"] == "/v1/chat/completions", "\(relayed)")
        let injected = (try await gw.get("/audit?action=secret.injected").json?["entries"].list ?? []).filter { $0["runId"]?.stringValue == id }
        #expect(injected.first?["details"]?["name"] == "CHAT_KEY")
    }

    @Test("a process that detached from the agent keeps no way into the relay once the step has ended")
    func lingering() async throws {
        let done = try await gw.run("linger")
        #expect(done["steps"].list.first { $0["path"] == "ask" }?["output"] == "lingering", "\(done)")
        let file = dir + "/out/linger.txt"
        var text: String?
        for _ in 0..<300 where text == nil {
            text = try? String(contentsOfFile: file, encoding: .utf8)
            if text == nil { try await Task.sleep(for: .milliseconds(20)) }
        }
        let said = try #require(text, "the detached process wrote nothing")
        #expect(said.hasPrefix("first 200"), "\(said)")
        #expect(said.contains("after the step: refused"), "\(said)")
    }

    @Test("a step whose allowHosts leaves the provider out gets a refusal from the relay; nothing reaches the provider")
    func refused() async throws {
        let before = (try? String(contentsOfFile: record, encoding: .utf8))?.count ?? 0
        let done = try await gw.run("no-egress")
        #expect(done["output"]?.stringValue?.hasPrefix("chat failed") == true, "\(done)")
        #expect(((try? String(contentsOfFile: record, encoding: .utf8))?.count ?? 0) == before)
    }
}
