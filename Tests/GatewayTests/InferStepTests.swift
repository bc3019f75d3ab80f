import Foundation
import SkelmClient
import Testing
import Workflow

#if canImport(Glibc)
import Glibc
#endif

/// `infer` steps against a local server that speaks the OpenAI chat-completions
/// protocol, checked in the same test with the official `openai` SDK so the
/// stand-in cannot drift from the real protocol.
@Suite("Infer steps", .serialized)
final class InferStepTests {
    static let key = "sk-test-9f2c71d04e"
    static let workflows: [String: String] = [
        "echo.workflow.yaml": """
            id: echo
            steps:
              - id: say
                infer: { provider: local, prompt: "echo: ${{ input.text }}", maxTokens: 50 }
            """,
        "title.workflow.yaml": """
            id: title
            steps:
              - id: name
                infer:
                  provider: local
                  system: You name things.
                  prompt: "${{ input.text }}"
                  responseFormat:
                    type: object
                    required: [title, words]
                    properties: { title: { type: string }, words: { type: integer } }
            """,
        "retrying.workflow.yaml": """
            id: retrying
            steps:
              - id: ask
                retry: { max: 2, backoff: 50ms }
                infer: { provider: flaky, prompt: "echo: made it" }
            """,
        "nowhere.workflow.yaml": """
            id: nowhere
            steps:
              - { id: ask, infer: { provider: missing, prompt: hi } }
            """,
    ]

    let gw: TestGateway
    let chat: FixturePeer
    let flaky: FixturePeer
    let record: String
    /// The stand-ins' logs and record of requests: removed with the suite.
    let dir: String

    init() async throws {
        dir = "/tmp/skelm-chat-\(UUID().uuidString.prefix(8).lowercased())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        record = dir + "/requests.jsonl"
        // A pause between tokens long enough that they reach the event stream in several events.
        chat = try await FixturePeer.start("chat/chat_server.py", ["--record", record],
                                           environment: ["CHAT_API_KEY": Self.key, "CHAT_STREAM_DELAY_MS": "120"], log: dir + "/chat.log")
        flaky = try await FixturePeer.start("chat/chat_server.py", [], environment: ["CHAT_FAIL_FIRST": "1", "CHAT_FAIL_STATUS": "429"],
                                            log: dir + "/flaky.log")
        gw = try TestGateway(workflows: Self.workflows, config: """
            server: { host: 127.0.0.1, port: 0 }
            workers: { minSpare: 1, max: 4, uidBase: UIDBASE }
            defaults: { permissions: { allowedExecutables: [sh], networkEgress: { allowHosts: ["127.0.0.1:\(chat.port)", "127.0.0.1:\(flaky.port)"] } } }
            secrets: { env: { prefix: SKELM_TEST_SECRET_ } }
            providers:
              local: { baseURL: "http://127.0.0.1:\(chat.port)/v1", model: stand-in-model, apiKeySecret: CHAT_KEY }
              flaky: { baseURL: "http://127.0.0.1:\(flaky.port)/v1", model: stand-in-model }
            """)
        gw.environment = ["SKELM_TEST_SECRET_CHAT_KEY": Self.key]
        try await gw.start()
    }

    deinit {
        gw.cleanupLater()
        chat.stop()
        flaky.stop()
        try? FileManager.default.removeItem(atPath: dir)
    }

    @Test("the official openai SDK accepts the stand-in's answers, plain and streamed")
    func standInIsTheRealProtocol() async throws {
        let check = await runProgram(["python3", FixturePeer.fixtures + "/chat/check_with_openai_sdk.py",
                                      "http://127.0.0.1:\(chat.port)/v1", "--api-key", Self.key])
        #expect(check.status == 0, "\(check.output)")
        #expect(check.output.contains("ok"))
    }

    @Test("tokens stream to the run's events as infer.delta while the reply arrives; usage is recorded; the key never reaches the run")
    func streams() async throws {
        let run = try await gw.run("echo", ["text": "one two three four five six"], sync: false)
        let id = try #require(run["id"]?.stringValue)
        // Subscribed while the run is under way: the deltas are live, then the stream ends with the run.
        let (events, _) = try await gw.events(id)
        let deltas = events.filter { $0.type == "infer.delta" }.compactMap { JSONValue.parse($0.data)?["data"]?["text"]?.stringValue }
        #expect(deltas.count >= 2, "the reply came in pieces: \(deltas)")
        #expect(deltas.joined() == "one two three four five six")
        let done = try await gw.waitForStatus(id, ["succeeded", "failed"])
        #expect(done["status"] == "succeeded", "\(done)")
        #expect(done["output"] == "one two three four five six")
        let finished = events.first { $0.type == "step.finished" }.flatMap { JSONValue.parse($0.data) }
        #expect(finished?["data"]?["usage"]?["completionTokens"] == 6)
        #expect(finished?["data"]?["model"] == "stand-in-model")

        // The provider saw the key, added by the control plane; the run holds it nowhere.
        let requests = try String(contentsOfFile: record, encoding: .utf8).split(separator: "\n").compactMap { JSONValue.parse(String($0)) }
        #expect(requests.contains { $0["headers"]?["authorization"]?.stringValue == "Bearer \(Self.key)" })
        let stored = try await gw.get("/runs/\(id)/events?limit=1000", headers: [("Accept", "application/json")]).body
        #expect(!String(decoding: stored, as: UTF8.self).contains(Self.key))
        let audited = try await gw.get("/audit?action=secret.injected").json?["entries"].list ?? []
        #expect(audited.contains { $0["runId"]?.stringValue == id && $0["details"]?["name"] == "CHAT_KEY" })
        #expect(!String(decoding: try await gw.get("/audit?limit=1000").body, as: UTF8.self).contains(Self.key))
    }

    @Test("responseFormat makes the output the parsed reply, checked against the schema; a reply that breaks it is OutputInvalid")
    func responseFormat() async throws {
        let done = try await gw.run("title", ["text": "a short story"])
        #expect(done["status"] == "succeeded", "\(done)")
        #expect(done["output"]?["title"]?.stringValue != nil)
        #expect(done["output"]?["words"] == 1)
        let sent = try String(contentsOfFile: record, encoding: .utf8).split(separator: "\n").compactMap { JSONValue.parse(String($0)) }
        #expect(sent.contains { $0["body"]?["response_format"]?["type"] == "json_schema" })
        let broken = try await gw.run("title", ["text": #"json: {"title": 7}"#])
        #expect(broken["status"] == "failed")
        #expect(broken["error"]?["code"] == "OutputInvalid")
        #expect(broken["error"]?["message"]?.stringValue?.contains("reply") == true, "\(broken)")
    }

    @Test("a 429 fails the attempt as InferFailed; the step's retry gets the answer")
    func retries() async throws {
        let done = try await gw.run("retrying")
        #expect(done["status"] == "succeeded", "\(done)")
        #expect(done["output"] == "made it")
        let id = try #require(done["id"]?.stringValue)
        let events = try await gw.get("/runs/\(id)/events", headers: [("Accept", "application/json")]).json?["events"].list ?? []
        let failed = events.first { $0["type"] == "step.failed" }
        #expect(failed?["data"]?["code"] == "InferFailed")
        #expect(failed?["message"]?.stringValue?.contains("429") == true, "\(String(describing: failed))")
        #expect(done["steps"].list.first?["attempt"] == 2)
    }

    @Test("a provider config does not define is refused before the run exists")
    func unknownProvider() async throws {
        let r = try await gw.post("/runs", ["workflow": "nowhere"])
        #expect(r.status == 400)
        #expect(r.errorMessage.contains("missing"), "\(r.errorMessage)")
    }
}
