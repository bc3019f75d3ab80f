import Foundation
import Workflow

/// What the run service reads from config and a reload may change while runs
/// go on. Swapped whole, so a run never sees half of an old config and half of
/// a new one; a run that already started keeps the policies it started with.
public struct RunSettings: Sendable {
    public var policies: PolicyResolver
    public var secrets: SecretStore
    /// Runs holding a worker at once; raising it starts queued runs at once.
    public var maxConcurrent: Int
    /// What one run's events (step outputs included) may take in the store.
    public var maxRunStorageBytes: Int
    public var runTimeout: Duration
    public var stepTimeoutMs: Int
    /// How deep `invoke` steps may nest child runs.
    public var maxInvokeDepth = 8
    /// Runs holding a worker at once across every gateway sharing the store (nil: no such bound).
    public var fleetMaxConcurrent: Int?
    /// What `http` and `infer` steps' requests may use.
    public var requests = RequestSettings()

    public init(policies: PolicyResolver, secrets: SecretStore, maxConcurrent: Int, maxRunStorageBytes: Int = 256 << 20,
                runTimeout: Duration, stepTimeoutMs: Int) {
        self.policies = policies
        self.secrets = secrets
        self.maxConcurrent = maxConcurrent
        self.maxRunStorageBytes = maxRunStorageBytes
        self.runTimeout = runTimeout
        self.stepTimeoutMs = stepTimeoutMs
    }
}

/// Credentials, providers and bounds for the requests the control plane makes
/// for `http` and `infer` steps.
public struct RequestSettings: Sendable {
    public var inject: [CredentialInjection] = []
    public var providers: [String: GatewayConfig.Provider] = [:]
    public var maxResponseBytes = 10 << 20
    public var maxRedirects = 5

    public init(inject: [CredentialInjection] = [], providers: [String: GatewayConfig.Provider] = [:],
                maxResponseBytes: Int = 10 << 20, maxRedirects: Int = 5) {
        self.inject = inject
        self.providers = providers
        self.maxResponseBytes = maxResponseBytes
        self.maxRedirects = maxRedirects
    }
}
