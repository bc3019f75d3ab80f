import Foundation
import Workflow
import Yams

/// A workflow's `triggers:`: each entry names exactly one kind, and every
/// expression, zone, duration and path is checked here, so a schedule that
/// could never fire (or fires somewhere else than meant) never loads.
extension NodeReader {
    static let triggerKindKeys = ["cron", "every", "at", "webhook", "poll", "queue", "file-watch", "manual"]
    static let triggerCommon: Set<String> = ["id", "input", "overlap", "maxBuffer", "maxConcurrent", "catchUp", "catchUpWindow", "maxCatchUp",
                                             "tz", "jitter"]

    mutating func triggers(_ node: Node, _ path: String) -> [Trigger] {
        guard let seq = node.sequence else {
            issue(path, node, "must be a list of triggers")
            return []
        }
        var out: [Trigger] = []
        var names: [String: Int] = [:]
        for (i, entry) in seq.enumerated() {
            guard let t = trigger(entry, "\(path)[\(i)]") else { continue }
            if let line = names[t.name] {
                issue("\(path)[\(i)].id", entry, "two triggers are named '\(t.name)' (the other at line \(line)); give each its own id")
                continue
            }
            names[t.name] = entry.mark?.line ?? 0
            out.append(t)
        }
        return out
    }

    mutating func trigger(_ node: Node, _ path: String) -> Trigger? {
        guard let m = mapping(node, path, allowed: Self.triggerCommon.union(Self.triggerKindKeys)) else { return nil }
        let present = Self.triggerKindKeys.filter { m[$0] != nil }
        guard present.count == 1, let key = present.first, let body = m[key] else {
            issue(path, node, present.isEmpty ? "a trigger needs exactly one kind: \(Self.triggerKindKeys.joined(separator: ", "))"
                                              : "a trigger has exactly one kind, found \(present.joined(separator: " and "))")
            return nil
        }
        let kindName = key == "every" ? "interval" : key
        let name = m["id"].flatMap { string($0, "\(path).id") } ?? kindName
        if !Self.validId(name) { issue("\(path).id", m["id"] ?? node, "'\(name)' is not a valid trigger id (letters, digits, - and _, starting with a letter)") }
        let here = "\(path)(\(name))"
        for (k, kinds) in [("tz", ["cron", "at"]), ("jitter", ["every"])] where m[k] != nil && !kinds.contains(key) {
            issue("\(here).\(k)", m[k], "applies only to \(kinds.joined(separator: " and ")) triggers")
        }
        let tz = m["tz"].flatMap { zone($0, "\(here).tz") }
        let kind: TriggerKind?
        switch key {
        case "cron": kind = cron(body, "\(here).cron", zoneName: tz == nil ? nil : m["tz"]?.string)
        case "every": kind = interval(body, "\(here).every", jitter: m["jitter"], jitterPath: "\(here).jitter")
        case "at": kind = at(body, "\(here).at", zone: tz)
        case "webhook": kind = webhook(body, "\(here).webhook")
        case "poll": kind = poll(body, "\(here).poll")
        case "queue": kind = queue(body, "\(here).queue")
        case "file-watch": kind = fileWatch(body, "\(here).file-watch")
        default:
            if body.tagName == .null || body.bool == true || body.mapping?.isEmpty == true { kind = .manual } else {
                issue("\(here).manual", body, "takes no settings: write `manual: true`")
                kind = nil
            }
        }
        guard let kind else { return nil }
        var t = Trigger(name: name, kind: kind, input: m["input"].map(Self.json))
        if let n = m["overlap"], let o = choice(n, "\(here).overlap", as: OverlapPolicy.self) { t.overlap = o }
        if let n = m["catchUp"], let c = choice(n, "\(here).catchUp", as: CatchUpPolicy.self) {
            if !kind.isTimeBased { issue("\(here).catchUp", n, "applies only to cron, every and at triggers") }
            t.catchUp = c
        }
        // A one-shot missed while the gateway was down still fires within a day unless told otherwise.
        if case .at = kind { t.catchUpWindowSeconds = 86_400 }
        if let n = m["catchUpWindow"], let ms = durationMs(n, "\(here).catchUpWindow") {
            if ms < 1000 || ms > 30 * 86_400_000 { issue("\(here).catchUpWindow", n, "must be between 1s and 30 days") } else {
                t.catchUpWindowSeconds = Double(ms) / 1000
            }
        }
        if let n = int(m["maxBuffer"], "\(here).maxBuffer", range: 1...10_000) { t.maxBuffer = n }
        if let n = int(m["maxConcurrent"], "\(here).maxConcurrent", range: 1...1_000) { t.maxConcurrent = n }
        if let n = int(m["maxCatchUp"], "\(here).maxCatchUp", range: 1...10_000) { t.maxCatchUp = n }
        if case .queue = kind, m["overlap"] != nil {
            issue("\(here).overlap", m["overlap"], "a queue trigger runs its messages up to its own `concurrency`; overlap does not apply")
        }
        return t
    }

    mutating func zone(_ node: Node, _ path: String) -> TimeZone? {
        guard let name = string(node, path) else { return nil }
        do { return try CronTime.zone(named: name) } catch {
            issue(path, node, "\(error)")
            return nil
        }
    }

    mutating func cron(_ node: Node, _ path: String, zoneName: String?) -> TriggerKind? {
        guard let text = string(node, path) else { return nil }
        do {
            _ = try CronExpression(text)
        } catch {
            issue(path, node, "\(error)")
            return nil
        }
        // Kept as written (Foundation names UTC "GMT"); `TimeSchedule` resolves it again.
        return .cron(expression: text, timeZone: zoneName ?? "UTC")
    }

    mutating func interval(_ node: Node, _ path: String, jitter: Node?, jitterPath: String) -> TriggerKind? {
        guard let text = string(node, path) else { return nil }
        let spec: IntervalSpec
        do { spec = try IntervalSpec(every: text, jitter: jitter.flatMap { string($0, jitterPath) }) } catch {
            issue(jitter != nil && "\(error)".contains("jitter") ? jitterPath : path, node, "\(error)")
            return nil
        }
        return .interval(everyMs: spec.everyMs, jitterMs: spec.jitterMs)
    }

    mutating func at(_ node: Node, _ path: String, zone: TimeZone?) -> TriggerKind? {
        guard let text = string(node, path) else { return nil }
        do { return .at(try AtSpec(text, zone: zone).instant) } catch {
            issue(path, node, "\(error)")
            return nil
        }
    }

    mutating func webhook(_ node: Node, _ path: String) -> TriggerKind? {
        guard let m = mapping(node, path, allowed: ["path", "method", "signature", "public", "maxBodyKB", "headers", "dedupe"]) else { return nil }
        guard let raw = string(m["path"], "\(path).path") else {
            issue("\(path).path", node, "is required: where deliveries arrive, below /hooks/")
            return nil
        }
        let hookPath = raw.split(separator: "/", omittingEmptySubsequences: true).joined(separator: "/")
        if hookPath.isEmpty || hookPath.count > 200 || !hookPath.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-_./".contains($0)) })
            || hookPath.split(separator: "/").contains(where: { $0 == "." || $0 == ".." }) {
            issue("\(path).path", m["path"], "'\(raw)' is not a usable path (letters, digits, - _ . and /)")
        }
        var hook = WebhookTrigger(path: hookPath)
        if let n = m["method"], let method = string(n, "\(path).method") {
            let upper = method.uppercased()
            if ["POST", "PUT", "PATCH", "GET", "DELETE"].contains(upper) { hook.method = upper } else {
                issue("\(path).method", n, "must be one of POST, PUT, PATCH, GET, DELETE")
            }
        }
        if let n = m["signature"] { hook.signature = signature(n, "\(path).signature") }
        hook.isPublic = bool(m["public"], "\(path).public") ?? false
        if hook.isPublic, m["signature"] == nil {
            issue("\(path).public", m["public"], "a public webhook needs a signature: without one, anyone who finds the URL starts runs")
        }
        if let kb = int(m["maxBodyKB"], "\(path).maxBodyKB", range: 1...65_536) { hook.maxBodyBytes = kb << 10 }
        hook.headers = (strings(m["headers"], "\(path).headers") ?? []).map { $0.lowercased() }
        for h in hook.headers where WebhookSignature.neverForwarded.contains(h) {
            issue("\(path).headers", m["headers"], "'\(h)' is never copied into a run's input (credentials and signatures stay out of runs)")
        }
        if let n = m["dedupe"], let d = mapping(n, "\(path).dedupe", allowed: ["header", "ttl"]) {
            hook.dedupeHeader = string(d["header"], "\(path).dedupe.header")?.lowercased()
            if hook.dedupeHeader == nil { issue("\(path).dedupe.header", n, "is required: the header naming a delivery (e.g. X-GitHub-Delivery)") }
            if let h = hook.dedupeHeader, WebhookSignature.neverForwarded.contains(h) {
                issue("\(path).dedupe.header", d["header"], "'\(h)' carries a credential or a signature, never a delivery id")
            }
            if let ms = durationMs(d["ttl"], "\(path).dedupe.ttl") {
                if ms < 1000 || ms > 30 * 86_400_000 { issue("\(path).dedupe.ttl", d["ttl"], "must be between 1s and 30 days") } else { hook.dedupeTTLSeconds = ms / 1000 }
            }
        }
        return .webhook(hook)
    }

    mutating func signature(_ node: Node, _ path: String) -> WebhookTrigger.Signature? {
        guard let m = mapping(node, path, allowed: ["scheme", "secret", "tolerance"]) else { return nil }
        guard let secret = string(m["secret"], "\(path).secret") else {
            issue("\(path).secret", node, "is required: the name of a secret in the gateway's secret store")
            return nil
        }
        var tolerance = 300
        if let ms = durationMs(m["tolerance"], "\(path).tolerance") {
            if ms < 1000 || ms > 86_400_000 { issue("\(path).tolerance", m["tolerance"], "must be between 1s and 24h") } else { tolerance = ms / 1000 }
        }
        switch string(m["scheme"], "\(path).scheme") {
        case "hmac": return .hmac(secret: secret, toleranceSeconds: tolerance)
        case "github":
            if m["tolerance"] != nil { issue("\(path).tolerance", m["tolerance"], "GitHub signs no timestamp; replays are stopped by `dedupe`") }
            return .github(secret: secret)
        case "slack": return .slack(secret: secret, toleranceSeconds: tolerance)
        case let other:
            issue("\(path).scheme", m["scheme"] ?? node, "must be one of hmac, github, slack\(other.map { ", not '\($0)'" } ?? "")")
            return nil
        }
    }

    mutating func poll(_ node: Node, _ path: String) -> TriggerKind? {
        guard let m = mapping(node, path, allowed: ["every", "probe", "key"]) else { return nil }
        guard let everyNode = m["every"], let text = string(everyNode, "\(path).every") else {
            issue("\(path).every", node, "is required: how often the probe runs")
            return nil
        }
        let every: Int
        do { every = try IntervalSpec(every: text, jitter: nil).everyMs } catch {
            issue("\(path).every", everyNode, "\(error)")
            return nil
        }
        // Each probe is a sandboxed run, kept like any run.
        if every < 5000 {
            issue("\(path).every", everyNode, "must be at least 5s (each probe is a run of its own)")
            return nil
        }
        guard let p = m["probe"], let pm = mapping(p, "\(path).probe", allowed: ["exec", "http", "run", "timeout", "permissions"]) else {
            if m["probe"] == nil { issue("\(path).probe", node, "is required: an exec or http step whose result is watched") }
            return nil
        }
        // The probe is read like a step of its own; it sees `env` only (no run exists yet).
        var ids = IdTable()
        let kind: StepKind?
        if let e = pm["exec"] {
            kind = exec(e, "\(path).probe.exec", variables: [], ids: &ids).map(StepKind.exec)
        } else if let r = pm["run"] {
            kind = string(r, "\(path).probe.run").map { .exec(ExecStep(script: $0)) }
        } else if let h = pm["http"] {
            kind = http(h, "\(path).probe.http", variables: [], ids: &ids)
        } else {
            issue("\(path).probe", p, "needs exactly one of exec, run or http")
            return nil
        }
        for use in ids.uses {
            guard let t = try? Template(use.source) else { continue }
            for e in t.expressions where !e.references.roots.isSubset(of: ["env"]) {
                issue(use.path, use.node, "a probe can read only env (there is no run yet)")
            }
        }
        guard let kind else { return nil }
        var probe = Step(id: "probe", kind)
        probe.timeoutMs = durationMs(pm["timeout"], "\(path).probe.timeout")
        probe.permissions = pm["permissions"].flatMap { permissions($0, "\(path).probe.permissions", allowProfile: false).0 }
        let key = m["key"].flatMap { string($0, "\(path).key") }
        if let key, key.isEmpty || key.split(separator: ".", omittingEmptySubsequences: false).contains(where: \.isEmpty) {
            issue("\(path).key", m["key"], "must be a dotted path into the probe's output, such as body.etag or stdout")
        }
        return .poll(PollTrigger(probe: probe, key: key, everyMs: every))
    }

    mutating func queue(_ node: Node, _ path: String) -> TriggerKind? {
        guard let m = mapping(node, path, allowed: ["name", "visibilityTimeout", "maxAttempts", "concurrency", "maxDepth"]) else { return nil }
        guard let name = string(m["name"], "\(path).name") else {
            issue("\(path).name", node, "is required: the queue's name")
            return nil
        }
        if !Self.validId(name) { issue("\(path).name", m["name"], "'\(name)' is not a valid queue name (letters, digits, - and _)") }
        var q = QueueTrigger(queue: name)
        if let ms = durationMs(m["visibilityTimeout"], "\(path).visibilityTimeout") {
            if ms < 1000 || ms > 7 * 86_400_000 { issue("\(path).visibilityTimeout", m["visibilityTimeout"], "must be between 1s and 7 days") } else {
                q.visibilityTimeoutSeconds = ms / 1000
            }
        }
        if let n = int(m["maxAttempts"], "\(path).maxAttempts", range: 1...100) { q.maxAttempts = n }
        if let n = int(m["concurrency"], "\(path).concurrency", range: 1...256) { q.concurrency = n }
        if let n = int(m["maxDepth"], "\(path).maxDepth", range: 1...10_000_000) { q.maxDepth = n }
        return .queue(q)
    }

    mutating func fileWatch(_ node: Node, _ path: String) -> TriggerKind? {
        guard let m = mapping(node, path, allowed: ["dir", "events", "recursive", "pattern", "debounce"]) else { return nil }
        guard let dir = string(m["dir"], "\(path).dir") else {
            issue("\(path).dir", node, "is required: the directory to watch")
            return nil
        }
        if !dir.hasPrefix("/") { issue("\(path).dir", m["dir"], "'\(dir)' must be an absolute path") }
        var w = FileWatchTrigger(dir: dir)
        if let n = m["events"], let seq = n.sequence {
            w.events = seq.enumerated().compactMap { choice($0.element, "\(path).events[\($0.offset)]", as: FileWatchTrigger.Event.self) }
            if w.events.isEmpty { issue("\(path).events", n, "must name at least one of create, modify, delete, move") }
        } else if let n = m["events"] {
            issue("\(path).events", n, "must be a list of create, modify, delete, move")
        }
        w.recursive = bool(m["recursive"], "\(path).recursive") ?? false
        w.pattern = string(m["pattern"], "\(path).pattern")
        if let ms = durationMs(m["debounce"], "\(path).debounce") {
            if ms < 10 || ms > 3_600_000 { issue("\(path).debounce", m["debounce"], "must be between 10ms and 1h") } else { w.debounceMs = ms }
        }
        return .fileWatch(w)
    }
}
