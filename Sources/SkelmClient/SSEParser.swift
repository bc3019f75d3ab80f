import Workflow

/// Splits a text/event-stream into events (id, event, data), per the HTML spec's
/// parsing rules for the fields the gateway sends.
public struct SSEParser {
    public struct Event: Sendable {
        public var id: String?
        public var type = "message"
        public var data = ""
        public var json: JSONValue? { JSONValue.parse(data) }
    }

    private var buffer = ""
    private var current = Event()

    public init() {}

    public mutating func feed(_ text: String) -> [Event] {
        buffer += text
        var out: [Event] = []
        while let nl = buffer.firstIndex(of: "\n") {
            var line = String(buffer[..<nl])
            buffer.removeSubrange(...nl)
            if line.hasSuffix("\r") { line.removeLast() }
            if line.isEmpty {
                if !current.data.isEmpty || current.id != nil { out.append(current) }
                current = Event()
                continue
            }
            if line.hasPrefix(":") { continue }
            let (field, value) = line.firstIndex(of: ":").map { i -> (String, String) in
                var v = String(line[line.index(after: i)...])
                if v.hasPrefix(" ") { v.removeFirst() }
                return (String(line[..<i]), v)
            } ?? (line, "")
            switch field {
            case "id": current.id = value
            case "event": current.type = value
            case "data": current.data += current.data.isEmpty ? value : "\n" + value
            default: break
            }
        }
        return out
    }
}

