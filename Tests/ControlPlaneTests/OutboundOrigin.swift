@testable import ControlPlane
import Foundation
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `Tests/Fixtures/https_origin.py` on 127.0.0.1: HTTPS with a certificate for
/// `localhost` from the CA in `certs/ca.pem`, or plain HTTP without `certs`.
struct OriginServer {
    let port: Int
    private let process: Process

    /// Outside the test target's folder: SwiftPM would take a script there for
    /// an undeclared resource.
    static let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/https_origin.py").path

    /// Returns once the server listens. Servers sharing `certs` share its CA;
    /// start them one after the other (the first one makes it).
    static func start(certs: String?, log: String) async throws -> OriginServer {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", script] + (certs.map { ["--tls", $0] } ?? [])
        let out = Pipe(), input = Pipe()
        process.standardOutput = out
        // Held open until `stop`: the server exits when it closes, and the
        // kernel closes it too if this process dies first.
        process.standardInput = input
        // A file, not a pipe: a pipe nobody drains could stall the server.
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        process.standardError = FileHandle(forWritingAtPath: log)
        try process.run()
        let reader = out.fileHandleForReading
        // Blocking reads, on a thread of their own rather than one the async tests share.
        let line = await withCheckedContinuation { (cont: CheckedContinuation<String, Never>) in
            Thread {
                var bytes: [UInt8] = []
                while !bytes.contains(10) {
                    let chunk = reader.availableData
                    if chunk.isEmpty { break }
                    bytes += chunk
                }
                cont.resume(returning: String(decoding: bytes, as: UTF8.self))
            }.start()
        }
        guard let port = Int(line.trimmingCharacters(in: .whitespacesAndNewlines)) else {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            let why = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            throw FixtureFailure(description: "the origin fixture did not start: \(why)")
        }
        return OriginServer(port: port, process: process)
    }

    /// SIGKILL: the test runner's threads block SIGTERM, and a child
    /// inherits the mask of the thread that spawned it.
    func stop() {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }
}

struct FixtureFailure: Error, CustomStringConvertible {
    let description: String
}

/// A directory of its own for one test's certificates and logs.
func scratchDirectory() throws -> String {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("outbound-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

/// The egress decision as these tests need it: every name resolves to
/// 127.0.0.1 (where the fixtures listen) or, for `aliases`, to another name's
/// address; `forbidden.invalid` is refused, as is any port in `refusedPorts`.
/// `calls` counts the decisions asked for.
func testDecision(aliases: [String: String] = [:], refusedPorts: Set<Int> = [], calls: CallCounter? = nil) -> OutboundDecision {
    { host, port in
        calls?.increment()
        if host.text == "forbidden.invalid" { return .failure(EgressDenial("forbidden.invalid is not in allowHosts")) }
        if refusedPorts.contains(port) { return .failure(EgressDenial("port \(port) is not allowed")) }
        let name = aliases[host.text] ?? host.text
        guard let address = AddressClass.resolve(name, port: port).first(where: { $0.ip == "127.0.0.1" }) else {
            return .failure(EgressDenial("\(name) does not resolve to 127.0.0.1"))
        }
        return .success(address)
    }
}

final class CallCounter: Sendable {
    private let value = Mutex(0)
    func increment() { value.withLock { $0 += 1 } }
    var count: Int { value.withLock { $0 } }
}

/// What a callback saw, in order.
final class Collected<T: Sendable>: Sendable {
    private let items = Mutex<[T]>([])
    func append(_ item: T) { items.withLock { $0.append(item) } }
    var all: [T] { items.withLock { $0 } }
}

/// The fixture's echo of the request it received.
struct Echo: Decodable {
    let method: String
    let path: String
    let headers: [[String]]
    let body: String

    init(_ response: OutboundResponse) throws {
        self = try JSONDecoder().decode(Echo.self, from: Data(response.body))
    }

    /// Every value sent for `name`, compared case-insensitively.
    func values(_ name: String) -> [String] {
        headers.filter { $0.first?.lowercased() == name.lowercased() }.compactMap { $0.last }
    }
}

/// The error `body` throws, or nil if it returns (or throws something else, recorded as an issue).
func outboundFailure(_ body: () async throws -> OutboundResponse) async -> OutboundError? {
    do {
        _ = try await body()
        return nil
    } catch let error as OutboundError {
        return error
    } catch {
        Issue.record("not an OutboundError: \(error)")
        return nil
    }
}
