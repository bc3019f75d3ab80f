import Metrics

/// The audit writer's metrics. Created once, on first use (after the backend is
/// bootstrapped at start-up): a metric made per append would cost a factory call
/// and a lock each time.
enum AuditMetrics {
    static let entries = Counter(label: "skelm_audit_entries_total")
    /// One sample per fsync: a group commit of many entries is one sample.
    static let fsync = Timer(label: "skelm_audit_fsync_seconds")
}
