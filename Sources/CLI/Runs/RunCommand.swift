import ArgumentParser
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import SkelmClient
import Wire
import Workflow

/// `skelm run <workflow>`: starts a run, prints each step as it completes, then the output.
struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run a workflow on the gateway and follow it to the end.",
        discussion: "Exit status: 0 the run succeeded, 1 it failed or was cancelled, 2 bad config, 3 the gateway refused the request or could not be reached.")

    @Argument(help: "The workflow id (see `skelm workflows list`).") var workflow: String
    @Option(help: "The run's input, as JSON.") var input: String?
    @Option(help: "Read the input JSON from this file ('-' for stdin).") var inputFile: String?
    @Option(help: "Idempotency-Key: the same key and input return the same run.") var idempotencyKey: String?
    @Flag(help: "Print only the finished run as JSON.") var json = false
    @Flag(name: .customLong("detach"), help: "Start the run and print its id without waiting.") var detach = false
    @OptionGroup var client: ClientOptions

    func run() async throws {
        let inputValue = try readInput()
        let gateway = try client.client()
        var headers: [(String, String)] = []
        if let idempotencyKey { headers.append(("Idempotency-Key", idempotencyKey)) }
        let reply: GatewayClient.Reply
        do {
            reply = try await gateway.post("/runs", json: ["workflow": .string(workflow), "input": inputValue, "mode": "async"], headers: headers)
        } catch {
            throw Exit.unreachable("\(error)")
        }
        guard reply.status == 202 || reply.status == 200, case let .string(runId)? = reply.json?["id"] else {
            throw Exit.unreachable(Output.fail(reply).description)
        }
        if detach {
            if json { Output.printJSON(reply.body) } else { print(runId) }
            return
        }
        if !json { FileHandle.standardError.write(Data("run \(runId) (\(workflow))\n".utf8)) }
        try await follow(runId, gateway: gateway)
        let final = try await gateway.get("/runs/\(runId)")
        guard final.status == 200, let run = final.json else { throw Exit.unreachable(Output.fail(final).description) }
        if json {
            Output.printJSON(final.body)
        } else if run["status"] == "succeeded" {
            Output.printJSON(Data((run["output"] ?? .null).jsonText.utf8))
        } else {
            let code = run["error"]?["code"]?.stringValue ?? "Failed"
            let message = run["error"]?["message"]?.stringValue ?? ""
            let step = run["error"]?["step"]?.stringValue.map { " in step \($0)" } ?? ""
            FileHandle.standardError.write(Data(Output.safe("run \(run["status"]?.stringValue ?? "failed")\(step): \(code): \(message)\n").utf8))
        }
        if run["status"] != "succeeded" { throw ExitCode(1) }
    }

    func readInput() throws -> JSONValue {
        var text = input
        if let inputFile {
            let data = inputFile == "-" ? FileHandle.standardInput.readDataToEndOfFile() : FileManager.default.contents(atPath: inputFile)
            guard let data else { throw ValidationError("cannot read \(inputFile)") }
            text = String(decoding: data, as: UTF8.self)
        }
        guard let text else { return .object([:]) }
        guard let value = JSONValue.parse(text) else { throw ValidationError("--input is not valid JSON: \(text)") }
        return value
    }

    /// Reads the run's event stream until its terminal event, reconnecting with
    /// Last-Event-ID if the connection drops (a gateway restart, say).
    func follow(_ runId: String, gateway: GatewayClient) async throws {
        var last = 0
        for attempt in 0..<30 {
            var parser = SSEParser()
            var done = false
            do {
                try await gateway.exchange(.GET, "/runs/\(runId)/events", headers: [("Accept", "text/event-stream"), ("Last-Event-ID", "\(last)")]) { status, chunk in
                    guard status == 200 else { throw Exit.unreachable("event stream answered \(status)") }
                    guard let chunk else { return true }
                    for event in parser.feed(String(decoding: chunk.readableBytesView, as: UTF8.self)) {
                        if let id = Int(event.id ?? "") { last = id }
                        if !json { StepPrinter.print(event) }
                        if RunEventType(rawValue: event.type)?.isTerminal == true { done = true }
                    }
                    return !done
                }
            } catch let exit as ExitCode {
                throw exit
            } catch {
                if attempt == 29 { throw Exit.unreachable("lost the event stream: \(error)") }
            }
            if done { return }
            // The stream closed without the end of the run: the gateway restarted or is draining.
            if let run = try? await gateway.get("/runs/\(runId)"), case let .string(s)? = run.json?["status"],
               ["succeeded", "failed", "cancelled"].contains(s) { return }
            try await Task.sleep(for: .seconds(1))
        }
    }

    enum Exit {
        static func unreachable(_ message: String) -> any Error {
            FileHandle.standardError.write(Data("skelm: \(message)\n".utf8))
            return ExitCode(3)
        }
    }
}

/// One line per step as it completes. On a terminal, the step running now is
/// shown too, on a line the next one replaces; piped, only whole lines.
enum StepPrinter {
    static let live = isatty(STDOUT_FILENO) == 1

    static func print(_ event: SSEParser.Event) {
        guard let e = event.json, let step = e["step"]?.stringValue.map(Output.safe), let type = RunEventType(rawValue: event.type) else { return }
        if live {
            // Clears the "running" line this replaces (if any).
            Swift.print("\r\u{1b}[K", terminator: "")
            if type == .stepStarted {
                Swift.print("… \(step)", terminator: "")
                fflush(nil)   // all output streams: `stdout` itself is a C global Swift 6 will not touch
                return
            }
        }
        func message() -> String { Output.safe(e["message"]?.stringValue ?? "") }
        if type == .runWaiting {
            if let id = e["data"]?["approval"]?.stringValue {
                Swift.print("  approve with: skelm approvals approve \(id)   (or deny)")
            } else if let child = e["data"]?["child"]?.stringValue {
                Swift.print(Output.safe("  waits for its child run \(child)"))
            } else if let run = e["runId"]?.stringValue {
                Swift.print(Output.safe("  resume with: skelm runs resume \(run) --step \(step) --output '<JSON>'"))
            }
            return
        }
        let data = e["data"]
        var ms = ""
        if case let .number(d)? = data?["durationMs"] { ms = " (\(Int(d.rounded())) ms)" }
        switch type {
        case .stepFinished:
            Swift.print("✓ \(step)\(ms)")
        case .stepFailed:
            var attempt = ""
            if case let .number(n)? = data?["attempt"], n > 1 || data?["willRetry"] == .bool(true) { attempt = " [try \(Int(n))]" }
            let retry = data?["willRetry"] == .bool(true) ? " (will retry)" : ""
            Swift.print("✗ \(step)\(attempt)\(ms): \(message())\(retry)")
        case .stepParked:
            Swift.print("⏸ \(step) parked\(message().isEmpty ? "" : ": " + message())")
        case .stepSkipped:
            Swift.print("- \(step) skipped (\(message()))")
        case .agentMessage:
            if let text = data?["text"]?.stringValue { Swift.print(Output.safe("  \(step) says: \(text)")) }
        case .agentToolCall:
            let title = data?["title"]?.stringValue ?? data?["toolCallId"]?.stringValue ?? "?"
            Swift.print(Output.safe("  \(step) tool \(title)\(data?["status"]?.stringValue.map { " (\($0))" } ?? "")"))
        case .permissionDenied:
            Swift.print(Output.safe("  \(step) denied: \(data?["dimension"]?.stringValue ?? "?") does not allow \(data?["value"]?.stringValue ?? "?")"))
        case .mcpCall:
            Swift.print(Output.safe("  \(step) called \(data?["server"]?.stringValue ?? "?")/\(data?["tool"]?.stringValue ?? "?"): \(data?["outcome"]?.stringValue ?? "?")"))
        case .runQueued, .runStarted, .runResumed, .runWaiting, .runSucceeded, .runFailed, .runCancelled,
             .stepStarted, .stepBranch, .inferDelta, .childStarted, .agentThought, .agentPlan, .agentRequest:
            break
        }
    }
}
