/// CSV export: one row per entry, details as canonical JSON in one column;
/// a chain several gateways share adds the `gateway` column (it is hashed too).
public enum AuditExport {
    public static let header = "seq,timestamp,actor,action,runId,details,prevHash,entryHash"

    public static func header(shared: Bool) -> String { header + (shared ? ",gateway" : "") }

    public static func csv(_ entries: [AuditEntry]) -> String {
        header + "\n" + entries.map { row($0) }.joined()
    }

    /// One entry's row, with its line break: an export streams these after the header.
    public static func row(_ e: AuditEntry, shared: Bool = false) -> String {
        var cells = [String(e.seq), e.timestamp, e.actor, e.action, e.runId ?? "", CanonicalJSON.object(e.details), e.prevHash, e.entryHash]
        if shared { cells.append(e.gateway ?? "") }
        return cells.map(field).joined(separator: ",") + "\n"
    }

    /// RFC 4180: quote a field holding a comma, quote or line break; double the quotes.
    static func field(_ s: String) -> String {
        guard s.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) else { return s }
        return "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }
}
