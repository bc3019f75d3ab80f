import Foundation
import SkelmClient
import Testing
import Workflow

#if canImport(Glibc)
import Glibc
#endif

@Suite("Secrets", .serialized)
final class SecretTests {
    let gw: TestGateway
    static let fileSecret = "file-s3cr3t-\(UUID().uuidString.prefix(8))"
    static let envSecret = "env-s3cr3t-\(UUID().uuidString.prefix(8))"
    static let secretsFile = "/tmp/skelm-secrets-\(UUID().uuidString.prefix(8).lowercased()).json"

    static let workflows: [String: String] = [
        "leak.workflow.yaml": """
            id: leak
            steps:
              - id: echo
                exec:
                  argv: [sh, -c, 'echo "token=$TOKEN"; echo "stderr has $TOKEN too" >&2']
                  env: { TOKEN: "${{ secrets.API_TOKEN }}" }
              - id: fail
                exec:
                  argv: [sh, -c, 'echo "failing with $OTHER" >&2; exit 3']
                  env: { OTHER: "${{ secrets.OTHER }}" }
            """,
        "quiet.workflow.yaml": """
            id: quiet
            steps:
              - id: use
                exec:
                  argv: [sh, -c, 'test -n "$TOKEN" && echo has-token']
                  env: { TOKEN: "${{ secrets.API_TOKEN }}" }
            """,
        "envdump.workflow.yaml": """
            id: envdump
            steps:
              - { id: dump, exec: { argv: [sh, -c, 'export -p'] } }
            """,
        "missing.workflow.yaml": """
            id: missing
            steps:
              - id: use
                exec: { argv: [sh, -c, 'echo $X'], env: { X: "${{ secrets.NOPE }}" } }
            """,
        "argv.workflow.yaml": """
            id: argv
            steps:
              - id: use
                exec: { argv: [echo, "${{ secrets.API_TOKEN }}"] }
            """,
    ]

    init() async throws {
        gw = try TestGateway(workflows: Self.workflows, config: """
            server: { host: 127.0.0.1, port: 0 }
            workers: { minSpare: 1, max: 4, uidBase: UIDBASE }
            defaults: { permissions: { allowedExecutables: [sh, echo] } }
            secrets:
              file: { path: \(Self.secretsFile) }
              env: { prefix: SKELM_TEST_SECRET_ }
            """)
        try "{\"API_TOKEN\": \"\(Self.fileSecret)\"}".write(toFile: Self.secretsFile, atomically: true, encoding: .utf8)
        chmod(Self.secretsFile, 0o600)
        gw.environment = ["SKELM_TEST_SECRET_OTHER": Self.envSecret]
        try await gw.start()
    }

    deinit {
        gw.cleanupLater()
        unlink(Self.secretsFile)
    }

    @Test("a secret a step prints is redacted from its output, events, error and the audit log; access is audited by name")
    func redacted() async throws {
        let run = try await gw.run("leak")
        let id = run["id"]!.stringValue!
        #expect(run["status"] == "failed")
        let everything = [
            String(decoding: try await gw.get("/runs/\(id)").body, as: UTF8.self),
            String(decoding: try await gw.get("/runs/\(id)/events", headers: [("Accept", "application/json")]).body, as: UTF8.self),
            try String(contentsOfFile: gw.stateDir + "/audit.jsonl", encoding: .utf8),
            gw.logText,
        ].joined(separator: "\n")
        #expect(!everything.contains(Self.fileSecret), "the file secret leaked")
        #expect(!everything.contains(Self.envSecret), "the env secret leaked")
        #expect(run["steps"].list.first?["output"] == "token=***")
        #expect(run["error"]?["message"]?.stringValue?.contains("failing with ***") == true)
        let accessed = try await gw.get("/audit?action=secret.accessed&run=\(id)").json?["entries"].list ?? []
        #expect(Set(accessed.compactMap { $0["details"]?["name"]?.stringValue }) == ["API_TOKEN", "OTHER"])
    }

    @Test("a step's environment holds nothing of the gateway's: no SKELM_* variables, no secrets it did not ask for")
    func emptyEnvironment() async throws {
        let run = try await gw.run("envdump")
        let out = run["output"]?.stringValue ?? ""
        #expect(run["status"] == "succeeded")
        #expect(!out.contains("SKELM_"))
        #expect(!out.contains(Self.envSecret))
        #expect(out.contains("PATH='/usr/local/bin:/usr/bin:/bin'") || out.contains("PATH=\"/usr/local/bin:/usr/bin:/bin\""))
    }

    @Test("a secret reaches the step's environment")
    func delivered() async throws {
        let run = try await gw.run("quiet")
        #expect(run["output"] == "has-token")
    }

    @Test("an unknown secret fails the step as SecretNotFound and is audited as secret.not_found")
    func missing() async throws {
        let run = try await gw.run("missing")
        #expect(run["error"]?["code"] == "SecretNotFound")
        let audited = try await gw.get("/audit?action=secret.not_found&run=\(run["id"]!.stringValue!)").json?["entries"].list ?? []
        #expect(audited.first?["details"]?["name"] == "NOPE")
    }

    @Test("a secret outside env makes the workflow invalid")
    func onlyInEnv() async throws {
        let list = try await gw.get("/registry/workflows").json?["workflows"].list ?? []
        let argv = list.first { $0["id"] == "argv" }
        #expect(argv?["valid"] == false)
        #expect(argv?["issues"].list.first?["message"]?.stringValue?.contains("secrets may only be used in an exec step's env") == true)
    }
}

@Suite("Secret files")
struct SecretFileTests {
    @Test("a group- or world-readable secrets file stops the gateway from starting")
    func insecureFile() async throws {
        let file = "/tmp/skelm-secrets-open-\(UUID().uuidString.prefix(6)).json"
        try "{\"A\": \"b\"}".write(toFile: file, atomically: true, encoding: .utf8)
        chmod(file, 0o644)
        defer { unlink(file) }
        let gw = try TestGateway(workflows: [:], config: """
            server: { port: 0 }
            workers: { uidBase: UIDBASE }
            secrets: { file: { path: \(file) } }
            """)
        defer { gw.cleanupLater() }
        await #expect(throws: GatewayFailure.self) { try await gw.start() }
        #expect(gw.logText.contains("readable by others"))
    }
}
