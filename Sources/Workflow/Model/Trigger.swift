import Foundation

/// What starts runs of a workflow without anyone calling `POST /runs`: a
/// workflow's `triggers:` entries, and schedules operators add over the API.
/// The control plane arms them; workers never see one.
public struct Trigger: Codable, Sendable, Equatable {
    /// Unique within its workflow (declared) or the gateway (operator schedules).
    public var name: String
    public var kind: TriggerKind
    /// The run's input for time-based and manual fires (default `{}`).
    /// Event kinds (webhook, queue, poll, file-watch) build the input from the event.
    public var input: JSONValue?
    public var overlap: OverlapPolicy
    /// `buffer_all`: at most this many fires wait; more are dropped.
    public var maxBuffer: Int
    /// `allow_all`: at most this many runs of the trigger at once.
    public var maxConcurrent: Int
    public var catchUp: CatchUpPolicy
    /// Slots missed longer ago than this are never caught up.
    public var catchUpWindowSeconds: Double
    /// `catchUp: all` back-fills at most this many missed slots.
    public var maxCatchUp: Int

    public init(name: String, kind: TriggerKind, input: JSONValue? = nil, overlap: OverlapPolicy? = nil, maxBuffer: Int = 100,
                maxConcurrent: Int = 10, catchUp: CatchUpPolicy? = nil, catchUpWindowSeconds: Double = 3600, maxCatchUp: Int = 100) {
        self.name = name
        self.kind = kind
        self.input = input
        self.overlap = overlap ?? kind.defaultOverlap
        self.maxBuffer = maxBuffer
        self.maxConcurrent = maxConcurrent
        self.catchUp = catchUp ?? kind.defaultCatchUp
        self.catchUpWindowSeconds = catchUpWindowSeconds
        self.maxCatchUp = maxCatchUp
    }
}

/// Exactly one kind per trigger, with what that kind needs.
public enum TriggerKind: Codable, Sendable, Equatable {
    /// A cron expression evaluated in an IANA zone.
    case cron(expression: String, timeZone: String)
    /// Every `everyMs`, aligned to when the trigger was armed, each fire delayed by up to `jitterMs`.
    case interval(everyMs: Int, jitterMs: Int)
    /// Once, at this instant.
    case at(Date)
    case webhook(WebhookTrigger)
    case poll(PollTrigger)
    case queue(QueueTrigger)
    case fileWatch(FileWatchTrigger)
    /// Only `POST /triggers/:id/fire` (or `skelm schedule fire`) fires it.
    case manual

    public enum Name: String, Codable, Sendable, CaseIterable {
        case cron, interval, at, webhook, poll, queue
        case fileWatch = "file-watch"
        case manual
    }

    public var name: Name {
        switch self {
        case .cron: .cron
        case .interval: .interval
        case .at: .at
        case .webhook: .webhook
        case .poll: .poll
        case .queue: .queue
        case .fileWatch: .fileWatch
        case .manual: .manual
        }
    }

    /// Fires at times the gateway computes (and so can miss while it is down).
    public var isTimeBased: Bool {
        switch self {
        case .cron, .interval, .at: true
        default: false
        }
    }

    /// Time-based kinds do not pile up runs; events (a delivery, a changed
    /// file) each deserve a run, so those kinds let runs overlap up to a cap.
    public var defaultOverlap: OverlapPolicy {
        switch self {
        case .webhook: .allowAll
        case .fileWatch: .bufferOne
        default: .skip
        }
    }

    /// A one-shot instant missed while the gateway was down still fires (once);
    /// recurring slots realign to the next one.
    public var defaultCatchUp: CatchUpPolicy {
        if case .at = self { return .one }
        return CatchUpPolicy.none
    }
}

/// What a fire does while runs of the same trigger are still going.
public enum OverlapPolicy: String, Codable, Sendable, CaseIterable {
    /// The fire is skipped (counted and audited).
    case skip
    /// One fire waits for the running run to end; further ones are dropped.
    case bufferOne = "buffer_one"
    /// Fires wait in order, up to `maxBuffer`; further ones are dropped.
    case bufferAll = "buffer_all"
    /// The running runs are cancelled; the newest fire wins.
    case cancelOther = "cancel_other"
    /// Fires start at once, up to `maxConcurrent` runs; further ones are dropped.
    case allowAll = "allow_all"
}

/// What happens to slots that passed while the gateway was down (or paused).
public enum CatchUpPolicy: String, Codable, Sendable, CaseIterable {
    /// Realign to the next slot; the missed ones are counted as skipped.
    case none
    /// One fire stands for everything missed.
    case one
    /// Every missed slot in the window fires, oldest first, up to `maxCatchUp`.
    case all
}

/// `POST` (or another method) to `/hooks/<path>`.
public struct WebhookTrigger: Codable, Sendable, Equatable {
    public enum Signature: Codable, Sendable, Equatable {
        /// `X-Skelm-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">`.
        case hmac(secret: String, toleranceSeconds: Int)
        /// GitHub's `X-Hub-Signature-256`.
        case github(secret: String)
        /// Slack's `v0` signature with its request timestamp.
        case slack(secret: String, toleranceSeconds: Int)

        /// The name of the secret (in the gateway's secret store) the signature is made with.
        public var secretName: String {
            switch self {
            case let .hmac(s, _), let .github(s), let .slack(s, _): s
            }
        }
    }

    public var method: String
    /// Below `/hooks/`, without a leading slash.
    public var path: String
    public var signature: Signature?
    /// No API token needed (the signature, if any, authenticates the sender).
    public var isPublic: Bool
    public var maxBodyBytes: Int
    /// Header names (lower case) whose values are copied into the run's input.
    public var headers: [String]
    /// The header naming a delivery, and how long a delivery id is remembered.
    public var dedupeHeader: String?
    public var dedupeTTLSeconds: Int

    public init(method: String = "POST", path: String, signature: Signature? = nil, isPublic: Bool = false,
                maxBodyBytes: Int = 1 << 20, headers: [String] = [], dedupeHeader: String? = nil, dedupeTTLSeconds: Int = 86_400) {
        self.method = method
        self.path = path
        self.signature = signature
        self.isPublic = isPublic
        self.maxBodyBytes = maxBodyBytes
        self.headers = headers
        self.dedupeHeader = dedupeHeader
        self.dedupeTTLSeconds = dedupeTTLSeconds
    }
}

/// A probe run every `everyMs`; the trigger fires when the probe's key changes.
public struct PollTrigger: Codable, Sendable, Equatable {
    /// An `exec` or `http` step, run like any step of the workflow.
    public var probe: Step
    /// A template over `probe` (its output) naming what is compared; default the whole output.
    public var key: String?
    public var everyMs: Int

    public init(probe: Step, key: String? = nil, everyMs: Int) {
        self.probe = probe
        self.key = key
        self.everyMs = everyMs
    }
}

/// Each message on the named durable queue becomes one run.
public struct QueueTrigger: Codable, Sendable, Equatable {
    public var queue: String
    /// A message whose run has not ended this long after it was taken is offered again.
    public var visibilityTimeoutSeconds: Int
    /// After this many failed runs a message goes to the dead-letter list.
    public var maxAttempts: Int
    /// Runs of this queue at once.
    public var concurrency: Int
    /// Messages waiting (ready or in flight) beyond which an enqueue is refused (429).
    public var maxDepth: Int

    public init(queue: String, visibilityTimeoutSeconds: Int = 300, maxAttempts: Int = 3, concurrency: Int = 4, maxDepth: Int = 100_000) {
        self.queue = queue
        self.visibilityTimeoutSeconds = visibilityTimeoutSeconds
        self.maxAttempts = maxAttempts
        self.concurrency = concurrency
        self.maxDepth = maxDepth
    }
}

/// Changes under a directory, debounced into one run.
public struct FileWatchTrigger: Codable, Sendable, Equatable {
    public enum Event: String, Codable, Sendable, CaseIterable {
        case create, modify, delete, move
    }

    public var dir: String
    public var events: [Event]
    public var recursive: Bool
    /// fnmatch(3) pattern on file names.
    public var pattern: String?
    public var debounceMs: Int

    public init(dir: String, events: [Event] = Event.allCases, recursive: Bool = false, pattern: String? = nil, debounceMs: Int = 500) {
        self.dir = dir
        self.events = events
        self.recursive = recursive
        self.pattern = pattern
        self.debounceMs = debounceMs
    }
}
