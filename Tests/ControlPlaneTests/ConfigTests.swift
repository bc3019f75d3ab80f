import ControlPlane
import Testing
import Wire

@Suite("Config")
struct ConfigTests {
    @Test("an empty file gives the documented defaults")
    func defaults() throws {
        let config = try ConfigLoader.parse("", file: "skelm.config.yaml")
        #expect(config.server.host == "127.0.0.1")
        #expect(config.server.port == 14738)
        #expect(config.workers.minSpare == 2)
        #expect(config.workers.max == 8)
        #expect(config.workers.spawn == .template)
        #expect(config.workers.templateRecycleAfter == 1_000)
    }

    @Test("every key is read")
    func keys() throws {
        let config = try ConfigLoader.parse("""
            server:
              host: 0.0.0.0
              port: 9000
              allowedHosts: [gw.internal]
              socketGroup: root
              auth: { tokens: [ { name: ci, scope: operator, env: CI_TOKEN }, { name: dash, scope: viewer, secret: dash } ] }
            workers:
              minSpare: 1
              max: 3
              spawn: exec
              templateRecycleAfter: 50
              limits: {addressSpaceMB: 256, processes: 32}
            sandbox:
              require: [seccomp, landlock]
            """, file: "c.yaml")
        #expect(config.server.port == 9000)
        #expect(config.server.auth.effectiveMode(host: config.server.host) == .bearer, "on by default off loopback")
        #expect(config.server.auth.tokens.map(\.scope) == [.operator, .viewer])
        #expect(config.server.auth.tokens.map(\.env) == ["CI_TOKEN", nil])
        #expect(config.server.allowedHosts == ["gw.internal"])
        #expect(config.server.socketGroup == "root")
        #expect(config.workers.max == 3)
        #expect(config.workers.limits.addressSpaceMB == 256)
        #expect(config.workers.spawn == .exec)
        #expect(config.workers.templateRecycleAfter == 50)
        #expect(config.requiredLayers(runningAsRoot: true) == [.seccomp, .landlock])
    }

    @Test("run keys: concurrency, body limit, workflow dirs, storage")
    func runKeys() throws {
        let config = try ConfigLoader.parse("""
            server: { maxConcurrentRuns: 3, maxBodyKB: 8, runTimeoutSeconds: 60, sseHeartbeatSeconds: 5 }
            workflows: { dirs: [flows, /abs/flows] }
            storage: { runs: sqlite, durability: normal }
            """, file: "c.yaml")
        #expect(config.server.maxConcurrentRuns == 3)
        #expect(config.server.maxBodyKB == 8)
        #expect(config.server.sseHeartbeatSeconds == 5)
        #expect(config.storage.durability == .normal)
        let loaded = ConfigLoader.Loaded(config: config, path: "/srv/project/skelm.config.yaml", stateDir: "/srv/project/.skelm")
        #expect(loaded.workflowDirs == ["/srv/project/flows", "/abs/flows"])
        #expect(try ConfigLoader.parse("", file: "c.yaml").workflows.dirs == ["workflows"])
    }

    @Test("step request keys: providers, egress, invoke depth")
    func requestKeys() throws {
        let config = try ConfigLoader.parse("""
            server: { maxInvokeDepth: 3 }
            egress:
              maxResponseKB: 64
              maxRedirects: 2
              inject: [{ host: "api.example.com", secret: TOKEN }, { host: "hooks.example.com:8443", header: X-Key, secret: HOOK, format: "{}" }]
            providers:
              openai: { baseURL: "https://api.openai.com/v1", model: gpt-4o-mini, apiKeySecret: OPENAI_KEY }
            """, file: "c.yaml")
        #expect(config.server.maxInvokeDepth == 3)
        #expect(config.egress.maxResponseKB == 64)
        #expect(config.egress.maxRedirects == 2)
        #expect(config.egress.inject.map(\.header) == ["Authorization", "X-Key"])
        #expect(config.egress.inject.map(\.format) == ["Bearer {}", "{}"])
        #expect(config.providers["openai"]?.apiKeySecret == "OPENAI_KEY")
        let settings = config.runSettings(policies: config.policyResolver(environment: [:], configPath: nil), secrets: try SecretStore(envPrefix: nil, filePath: nil, environment: [:]))
        #expect(settings.maxInvokeDepth == 3)
        #expect(settings.requests.maxResponseBytes == 64 << 10)
        #expect(settings.requests.providers.keys.sorted() == ["openai"])
    }

    @Test("JSON is accepted too")
    func json() throws {
        let config = try ConfigLoader.parse(#"{"server": {"port": 8080}}"#, file: "c.json")
        #expect(config.server.port == 8080)
    }

    @Test("bad configs name the key and the line", arguments: [
        ("server:\n  prot: 1\n", "c.yaml:2: server.prot: unknown key"),
        ("workers:\n  max: lots\n", "c.yaml:2: workers.max: expected an integer"),
        ("colour: blue\n", "c.yaml:1: colour: unknown key"),
        ("workers:\n  minSpare: 9\n  max: 2\n", "workers.minSpare: must be between 0 and workers.max"),
        ("sandbox:\n  require: [seccomp, magic]\n", "sandbox.require[1]"),
        ("server: [1, 2]\n", "c.yaml:1: server: must be a mapping"),
        ("server:\n  port: 70000\n", "server.port: must be between 1 and 65535"),
        ("server:\n  maxConcurrentRuns: 0\n", "server.maxConcurrentRuns: must be between 1 and 1024"),
        ("storage:\n  driver: postgres\n", "storage.url: driver postgres needs a url"),
        ("storage:\n  driver: mysql\n", "storage.driver"),
        ("storage:\n  url: postgres://u@h/db\n", "storage.url: is for driver postgres"),
        ("storage:\n  driver: postgres\n  url: \"postgres://u:pw@h/db\"\n", "must not hold a password"),
        ("storage:\n  driver: postgres\n  url: \"mysql://u@h/db\"\n", "storage.url must look like postgres://"),
        ("storage:\n  driver: postgres\n  url: \"postgres://u@h/db?sslmode=maybe\"\n", "sslmode must be one of"),
        ("storage:\n  runs: sqlite\n  driver: postgres\n  url: postgres://u@h/db\n", "storage.runs"),
        ("storage:\n  poolSize: 0\n", "storage.poolSize: must be between 1 and 256"),
        ("storage:\n  gatewayId: \"gw one\"\n", "storage.gatewayId: must be 1 to 64 letters, digits"),
        ("server:\n  fleetMaxConcurrentRuns: 8\n", "server.fleetMaxConcurrentRuns: is for gateways sharing a PostgreSQL store"),
        ("server:\n  fleetMaxConcurrentRuns: 0\n", "server.fleetMaxConcurrentRuns: must be between 1 and 1000000"),
        ("egress:\n  inject: [{host: '*.example.com', secret: T}]\n", "egress.inject[0]: host '*.example.com' must be one host name"),
        ("egress:\n  inject: [{host: a.example, secret: T, format: 'no placeholder'}]\n", "egress.inject[0]: format must contain {} exactly once"),
        ("egress:\n  inject: [{host: a.example, secrt: T}]\n", "egress.inject[0].secrt: unknown key"),
        ("providers:\n  x: { baseURL: 'ftp://x/v1', model: m }\n", "providers.x.baseURL: 'ftp' URLs are not supported"),
        ("server:\n  maxInvokeDepth: 0\n", "server.maxInvokeDepth: must be between 1 and 64"),
        ("storage:\n  durability: sometimes\n", "storage.durability"),
        ("workflows:\n  dirs: flows\n", "c.yaml:2: workflows.dirs: expected a list"),
        ("workflows:\n  folders: [a]\n", "c.yaml:2: workflows.folders: unknown key"),
        ("workers:\n  spawn: fork\n", "workers.spawn"),
        ("workers:\n  templateRecycleAfter: 0\n", "workers.templateRecycleAfter: must be at least 1"),
        ("mcpServers:\n  - { id: t, command: /bin/sh, permissions: { fsRead: [/srv] } }\n",
         "mcpServers[0].permissions: is a resident server's ceiling; an ephemeral server runs under its step's policy"),
        ("mcpServers:\n  - { id: t, command: /bin/sh, lifecycle: resident, permissions: { networkEgress: { allowHosts: [a.example] } } }\n",
         "mcpServers[0].permissions.networkEgress: a resident MCP server's ceiling takes fsRead, fsWrite and allowedExecutables only"),
        ("mcpServers:\n  - { id: t, command: /bin/sh, lifecycle: resident, permissions: { fsWrite: [srv] } }\n",
         "mcpServers[0].permissions.fsWrite: 'srv' must be an absolute path"),
        ("mcpServers:\n  - { id: t, command: /bin/sh, lifecycle: forever }\n", "mcpServers[0].lifecycle"),
        ("workers: { max: 2, minSpare: 1 }\nmcpServers:\n  - { id: a, command: /bin/sh, lifecycle: resident }\n  - { id: b, command: /bin/sh, lifecycle: resident }\n",
         "workers.max: 2 resident agents and MCP servers each hold a worker of their own"),
    ])
    func errors(yaml: String, message: String) {
        do {
            _ = try ConfigLoader.parse(yaml, file: "c.yaml")
            Issue.record("accepted a bad config")
        } catch {
            #expect("\(error)".contains(message), "\(error)")
        }
    }
}
