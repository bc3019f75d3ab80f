import Workflow

/// The whole wire catalogue. Worker → control plane requests are few on purpose:
/// every one of them is a privilege the worker must ask for (see ControlPlane's
/// `WorkerMonitor`, which says in which state each is allowed).
public enum WireProtocol {
    /// Bumped on any incompatible change to the catalogue below.
    public static let version = 1
}

/// Worker → control plane, once, first: who I am and what sandbox I am in.
public enum WorkerHello: RPCMethod {
    public static let name = "worker.hello"
    public struct Params: Codable, Sendable, Equatable {
        public var protocolVersion: Int
        /// The worker's pid as it sees itself (1 inside its own pid namespace).
        public var pid: Int32
        public var sandbox: SandboxReport
        public init(protocolVersion: Int, pid: Int32, sandbox: SandboxReport) {
            self.protocolVersion = protocolVersion
            self.pid = pid
            self.sandbox = sandbox
        }
    }
    public typealias Result = Empty
}

/// Control plane → worker: run this job. Answered when it is done.
public enum JobStart: RPCMethod {
    public static let name = "job.start"
    public typealias Params = JobSpec
    public typealias Result = JobResult
}

/// Control plane → worker: stop the job (its processes are killed).
public enum JobCancel: RPCMethod {
    public static let name = "job.cancel"
    public struct Params: Codable, Sendable {
        public var jobId: String
        public init(jobId: String) { self.jobId = jobId }
    }
    public typealias Result = Empty
}

/// Either side: are you there?
public enum Ping: RPCMethod {
    public static let name = "ping"
    public typealias Params = Empty
    public typealias Result = Empty
}

/// Worker → control plane: something happened in the job.
public enum EventEmit: RPCNotificationMethod {
    public static let name = "event.emit"
    public typealias Params = JobEvent
}

/// Worker → control plane, while running a job: the value of a secret a step
/// references in its `env`. The control plane checks the step really references
/// it, audits the access (never the value), and answers per use: nothing is
/// handed to a worker before a step needs it.
public enum SecretResolve: RPCMethod {
    public static let name = "secret.resolve"
    public struct Params: Codable, Sendable {
        public var jobId: String
        /// The step's path (`fan[2]/call`); its id is the last component.
        public var step: String
        public var name: String
        public init(jobId: String, step: String, name: String) {
            self.jobId = jobId
            self.step = step
            self.name = name
        }
    }
    public struct Result: Codable, Sendable {
        public var value: String
        public init(value: String) { self.value = value }
    }
}

/// Control plane → worker: start an MCP server in the sandbox and list its
/// tools (`GET /v1/registry/mcp-servers/:id/tools`). A job of its own, in a
/// fresh worker, like any other.
public enum MCPTools: RPCMethod {
    public static let name = "mcp.tools"
    public struct Params: Codable, Sendable {
        public var jobId: String
        public var workspace: String
        public var server: PeerLaunch
        public var limits: StepLimits
        public var timeoutMs: Int
        public init(jobId: String, workspace: String, server: PeerLaunch, limits: StepLimits, timeoutMs: Int) {
            self.jobId = jobId
            self.workspace = workspace
            self.server = server
            self.limits = limits
            self.timeoutMs = timeoutMs
        }
    }
    public struct Result: Codable, Sendable {
        /// The server's tools, as `tools/list` gave them.
        public var tools: JSONValue
        /// What `initialize` said of the server (`serverInfo`, `protocolVersion`).
        public var server: JSONValue
        public init(tools: JSONValue, server: JSONValue) {
            self.tools = tools
            self.server = server
        }
    }
}

/// Worker → control plane: an agent step with `onPermission: ask` asks a person
/// whether its agent may use a tool. Answered when the approval is decided, or
/// denied when `timeoutMs` passes.
public enum AgentPermission: RPCMethod {
    public static let name = "agent.permission"
    public struct Params: Codable, Sendable {
        public var jobId: String
        public var step: String
        /// The tool call's title, as the agent gave it.
        public var title: String
        public var timeoutMs: Int
        public init(jobId: String, step: String, title: String, timeoutMs: Int) {
            self.jobId = jobId
            self.step = step
            self.title = title
            self.timeoutMs = timeoutMs
        }
    }
    public struct Result: Codable, Sendable {
        public var approved: Bool
        public var approval: String
        public var actor: String?
        public init(approved: Bool, approval: String, actor: String?) {
            self.approved = approved
            self.approval = approval
            self.actor = actor
        }
    }
}
