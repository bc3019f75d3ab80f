import Foundation
import SkelmClient
import Workflow

/// Runs bench/peers.py (Temporal, Celery, DBOS) and reads its one JSON line per peer.
enum Peers {
    struct Result {
        var name: String
        var version = ""
        var seqP50 = 0.0, seqP99 = 0.0, rate = 0.0, tputP99 = 0.0
        var error: String?
    }

    static func run(python: String, quick: Bool) -> [Result] {
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../bench/peers.py").standardized.path
        let p = Process()
        p.executableURL = URL(fileURLWithPath: python)
        p.arguments = [script] + (quick ? ["--quick"] : [])
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        do { try p.run() } catch { return [Result(name: "peers", error: "cannot start \(python): \(error)")] }
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        return text.split(separator: "\n").compactMap { line in
            guard let j = JSONValue.parse(String(line)), let name = j["peer"]?.stringValue else { return nil }
            var r = Result(name: name)
            if let e = j["error"]?.stringValue { r.error = e; return r }
            func n(_ k: String) -> Double { if case let .number(v)? = j[k] { v } else { 0 } }
            r.version = j["version"]?.stringValue ?? ""
            r.seqP50 = n("seq_p50"); r.seqP99 = n("seq_p99"); r.rate = n("runs_per_s"); r.tputP99 = n("tput_p99")
            return r
        }
    }

    static func printTable(_ header: [String], _ rows: [[String]]) {
        print(TextTable.render(header, rows, rule: true))
    }
}
