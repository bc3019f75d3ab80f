import ArgumentParser
import Foundation
import SkelmClient
import Wire
import Workflow

struct RunsEvents: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "events", abstract: "A run's events, in order; --follow streams them until the run ends.")
    @Argument(help: "Run id.") var id: String
    @Option(help: "Only events after this seq.") var since = 0
    @Flag(name: [.short, .long], help: "Keep streaming new events until the run ends (reconnects if the gateway restarts).") var follow = false
    @Flag(help: "Print one JSON event per line.") var json = false
    @OptionGroup var client: ClientOptions

    func validate() throws {
        if since < 0 { throw ValidationError("--since must be 0 or more") }
    }

    func run() async throws {
        let gateway = try client.client()
        if !follow {
            let reply = try await gateway.get("/runs/\(id)/events?since=\(since)&limit=10000", headers: [("Accept", "application/json")])
            guard reply.status == 200 else { throw Output.fail(reply) }
            if case let .array(list)? = reply.json?["events"] { list.forEach(printEvent) }
            return
        }
        var last = since
        for attempt in 0..<30 {
            var parser = SSEParser()
            var done = false
            do {
                try await gateway.exchange(.GET, "/runs/\(id)/events", headers: [("Accept", "text/event-stream"), ("Last-Event-ID", "\(last)")]) { status, chunk in
                    guard status == 200 else { throw CLIFailure("event stream answered \(status)") }
                    guard let chunk else { return true }
                    for event in parser.feed(String(decoding: chunk.readableBytesView, as: UTF8.self)) {
                        if let seq = Int(event.id ?? "") { last = seq }
                        if let e = event.json { printEvent(e) }
                        if RunEventType(rawValue: event.type)?.isTerminal == true { done = true }
                    }
                    return !done
                }
            } catch let failure as CLIFailure {
                throw failure
            } catch {
                if attempt == 29 { throw CLIFailure("lost the event stream: \(error)") }
            }
            if done { return }
            try await Task.sleep(for: .seconds(1))
        }
    }

    func printEvent(_ e: JSONValue) {
        if json { return print(e.jsonText) }
        let data = e["data"].flatMap { $0 == .null ? nil : $0.jsonText } ?? ""
        print(Output.safe([e["seq"].map(\.jsonText) ?? "", e["at"]?.stringValue ?? "", e["type"]?.stringValue ?? "",
                           e["step"]?.stringValue ?? "", e["message"]?.stringValue ?? "", data]
            .filter { !$0.isEmpty }.joined(separator: "  ")))
    }
}
