import Foundation
import Workflow

extension GatewayConfig {
    /// Requests the control plane makes for `http` and `infer` steps.
    public struct Egress: Codable, Sendable {
        /// PEM file of CA certificates trusted besides the system's (a private CA).
        public var caFile: String?
        /// Credentials added to requests to a host, on the way out.
        public var inject: [CredentialInjection] = []
        /// A response body larger than this fails the step.
        public var maxResponseKB = 10_240
        /// Redirects one request may follow (each to a host the step may reach).
        public var maxRedirects = 5
        public init() {}

        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            let d = Egress()
            caFile = try c.decodeIfPresent(String.self, forKey: .caFile)
            inject = try c.value(.inject, or: d.inject)
            maxResponseKB = try c.value(.maxResponseKB, or: d.maxResponseKB)
            maxRedirects = try c.value(.maxRedirects, or: d.maxRedirects)
        }
    }

    /// An OpenAI-compatible chat-completions endpoint `infer` steps may name.
    public struct Provider: Codable, Sendable, Equatable {
        /// Up to the version, e.g. `https://api.openai.com/v1`: requests go to `<baseURL>/chat/completions`.
        public var baseURL: String
        /// The model of a step that names none.
        public var model: String
        /// The secret whose value is sent as `Authorization: Bearer <value>`; nil: no key.
        public var apiKeySecret: String?

        public init(baseURL: String, model: String, apiKeySecret: String? = nil) {
            self.baseURL = baseURL
            self.model = model
            self.apiKeySecret = apiKeySecret
        }
    }
}
