import Foundation

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
