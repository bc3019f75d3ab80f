import Workflow

/// Worker → control plane, while an `http` step runs: make this request. The
/// worker evaluated the step's templates; the control plane checks the URL
/// against the step's `allowHosts`, adds the credentials bound to the host,
/// speaks TLS to the origin, follows redirects it may follow, and hands back
/// the raw response, which the worker turns into the step's output. The
/// method comes from the definition, never from this request.
public enum HTTPFetch: RPCMethod {
    public static let name = "http.fetch"
    public struct Params: Codable, Sendable {
        public var jobId: String
        public var step: String
        public var url: String
        public var headers: [Header]
        /// Base64; nil: no body.
        public var body: String?
        public init(jobId: String, step: String, url: String, headers: [Header], body: String?) {
            self.jobId = jobId
            self.step = step
            self.url = url
            self.headers = headers
            self.body = body
        }
    }
    public struct Result: Codable, Sendable {
        public var status: Int
        public var headers: [Header]
        /// Base64.
        public var body: String
        /// After redirects.
        public var url: String
        public init(status: Int, headers: [Header], body: String, url: String) {
            self.status = status
            self.headers = headers
            self.body = body
            self.url = url
        }
    }
}

public struct Header: Codable, Sendable, Equatable {
    public var name: String
    public var value: String
    public init(_ name: String, _ value: String) {
        self.name = name
        self.value = value
    }
}

/// Worker → control plane, while an `infer` step runs: complete this chat.
/// Only the messages come from the worker (it evaluated their templates); the
/// provider, model, temperature, token limit and response format come from the
/// definition. The control plane streams the reply's tokens into the run's
/// events as `infer.delta` and answers with the whole reply.
public enum InferComplete: RPCMethod {
    public static let name = "infer.complete"
    public struct Params: Codable, Sendable {
        public var jobId: String
        public var step: String
        public var messages: [InferStep.Message]
        public init(jobId: String, step: String, messages: [InferStep.Message]) {
            self.jobId = jobId
            self.step = step
            self.messages = messages
        }
    }
    public struct Result: Codable, Sendable {
        public var content: String
        public var model: String
        public var finishReason: String?
        public var usage: Usage
        public init(content: String, model: String, finishReason: String?, usage: Usage) {
            self.content = content
            self.model = model
            self.finishReason = finishReason
            self.usage = usage
        }
    }
    public struct Usage: Codable, Sendable, Equatable {
        public var promptTokens: Int
        public var completionTokens: Int
        public init(promptTokens: Int, completionTokens: Int) {
            self.promptTokens = promptTokens
            self.completionTokens = completionTokens
        }
    }
}

/// Worker → control plane: one request an agent made to its provider through
/// the worker's relay. The control plane sends it to the provider named in
/// config, with the provider's key, under the step's `allowHosts`.
public enum ProviderRelay: RPCMethod {
    public static let name = "provider.relay"
    public struct Params: Codable, Sendable {
        public var jobId: String
        public var step: String
        public var method: String
        /// The path and query the agent asked for (`/v1/chat/completions`).
        public var path: String
        public var headers: [Header]
        /// Base64.
        public var body: String?
        public init(jobId: String, step: String, method: String, path: String, headers: [Header], body: String?) {
            self.jobId = jobId
            self.step = step
            self.method = method
            self.path = path
            self.headers = headers
            self.body = body
        }
    }
    public typealias Result = HTTPFetch.Result
}
