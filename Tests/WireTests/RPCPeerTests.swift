import Foundation
import NIOCore
import NIOPosix
import Synchronization
import Testing
@testable import Wire

#if canImport(Glibc)
import Glibc
#endif

enum Echo: RPCMethod {
    static let name = "test.echo"
    struct Params: Codable, Sendable { var value: Int; var delayMs: Int }
    struct Result: Codable, Sendable, Equatable { var value: Int }
}

func echoRouter() -> RPCRouter {
    var router = RPCRouter()
    router.on(Echo.self) { params, _ in
        try await Task.sleep(for: .milliseconds(params.delayMs))
        return Echo.Result(value: params.value)
    }
    router.on(Ping.self) { _, _ in Empty() }
    return router
}

func socketPair() -> (Int32, Int32) {
    var fds: [Int32] = [-1, -1]
    precondition(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) == 0)
    return (fds[0], fds[1])
}

/// The far end as raw bytes, so tests can send what no well-behaved peer would.
struct RawEnd {
    let fd: Int32

    /// Stops early when the far end has closed (EPIPE, ECONNRESET): a test
    /// that floods a peer until it hangs up keeps sending after it did.
    func send(_ bytes: [UInt8]) {
        var off = 0
        while off < bytes.count {
            let n = bytes[off...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if n < 0, errno == EPIPE || errno == ECONNRESET { return }
            precondition(n > 0, "write: \(String(cString: strerror(errno)))")
            off += n
        }
    }

    func sendFrame(_ payload: [UInt8], declared: UInt32? = nil) {
        let len = declared ?? UInt32(payload.count)
        send([UInt8(len >> 24), UInt8((len >> 16) & 0xff), UInt8((len >> 8) & 0xff), UInt8(len & 0xff)] + payload)
    }

    func sendJSON(_ text: String) { sendFrame(Array(text.utf8)) }

    /// Reads one frame on a thread of its own (a blocking read on the cooperative
    /// pool would starve the very tasks that are to answer); nil on EOF.
    func readFrame() async -> [String: Any]? {
        let fd = self.fd
        let json: Data? = await withCheckedContinuation { cont in
            Thread { cont.resume(returning: RawEnd(fd: fd).readFrameBlocking()) }.start()
        }
        return json.flatMap { try? JSONSerialization.jsonObject(with: $0) as? [String: Any] }
    }

    /// Bounded by a receive timeout so a bug cannot hang the suite (generous:
    /// on a loaded two-core host an answer can take seconds).
    func readFrameBlocking() -> Data? {
        var tv = timeval(tv_sec: 30, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        func readExactly(_ n: Int) -> [UInt8]? {
            var out = [UInt8](repeating: 0, count: n)
            var got = 0
            while got < n {
                let r = out[got...].withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if r <= 0 { return nil }
                got += r
            }
            return out
        }
        guard let h = readExactly(4) else { return nil }
        let len = Int(h[0]) << 24 | Int(h[1]) << 16 | Int(h[2]) << 8 | Int(h[3])
        guard let body = readExactly(len) else { return nil }
        return Data(body)
    }

    func errorCode(of frame: [String: Any]?) -> Int? {
        (frame?["error"] as? [String: Any])?["code"] as? Int
    }

    /// Proves the connection still serves after whatever came before.
    func pingWorks() async -> Bool {
        sendJSON(#"{"jsonrpc":"2.0","id":"p","method":"ping"}"#)
        let reply = await readFrame()
        return reply?["id"] as? String == "p" && reply?["result"] != nil
    }
}

@Suite("JSON-RPC peer")
struct RPCPeerTests {
    let group = MultiThreadedEventLoopGroup.singleton

    func servedRaw(maxFrame: Int = WireLimits.defaultMaxFrameSize) async throws -> (RPCPeer, RawEnd) {
        let (a, b) = socketPair()
        var limits = RPCPeer.Limits()
        limits.maxFrameSize = maxFrame
        let peer = try await RPCPeer.connect(fd: a, group: group, handler: echoRouter(), limits: limits)
        return (peer, RawEnd(fd: b))
    }

    @Test("malformed messages get the JSON-RPC error they deserve and the channel keeps serving", arguments: [
        ("", RPCError.parseError),
        ("{not json", RPCError.parseError),
        ("\u{FF}\u{FE}garbage", RPCError.parseError),
        ("[1,2,3]", RPCError.invalidRequest),
        (#"{"hello":"world"}"#, RPCError.invalidRequest),
        (#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#, RPCError.invalidRequest),
        (#"{"jsonrpc":"2.0","id":{"x":1},"method":"ping"}"#, RPCError.invalidRequest),
        (#"{"jsonrpc":"2.0","id":7,"method":"no.such.method"}"#, RPCError.methodNotFound),
        (#"{"jsonrpc":"2.0","id":8,"method":"test.echo","params":{"value":"x"}}"#, RPCError.invalidParams),
        (#"{"jsonrpc":"2.0","id":9,"method":"test.echo"}"#, RPCError.invalidParams),
    ])
    func malformed(payload: String, code: Int) async throws {
        let (peer, raw) = try await servedRaw()
        defer { close(raw.fd); peer.close() }
        raw.sendJSON(payload)
        #expect(raw.errorCode(of: await raw.readFrame()) == code)
        #expect(await raw.pingWorks())
    }

    @Test("invalid UTF-8 inside a JSON string is a parse error, not a crash")
    func invalidUTF8() async throws {
        let (peer, raw) = try await servedRaw()
        defer { close(raw.fd); peer.close() }
        raw.sendFrame(Array(#"{"jsonrpc":"2.0","id":1,"method":""#.utf8) + [0xC3, 0x28, 0xA0] + Array(#""}"#.utf8))
        #expect(raw.errorCode(of: await raw.readFrame()) == RPCError.parseError)
        #expect(await raw.pingWorks())
    }

    @Test("an unknown method's error carries the request's id")
    func unknownMethodID() async throws {
        let (peer, raw) = try await servedRaw()
        defer { close(raw.fd); peer.close() }
        raw.sendJSON(#"{"jsonrpc":"2.0","id":"abc","method":"nope"}"#)
        let reply = await raw.readFrame()
        #expect(reply?["id"] as? String == "abc")
        #expect(raw.errorCode(of: reply) == RPCError.methodNotFound)
    }

    @Test("a declared length over the limit closes the connection without reading the payload",
          arguments: [UInt32.max, UInt32(WireLimits.defaultMaxFrameSize + 1)])
    func oversized(declared: UInt32) async throws {
        let (peer, raw) = try await servedRaw()
        defer { close(raw.fd) }
        raw.sendFrame([], declared: declared)
        try await peer.closeFuture.get()
        #expect(await raw.readFrame() == nil)
    }

    @Test("a peer that closes mid-frame is a clean close, and pending calls fail")
    func truncated() async throws {
        let (a, b) = socketPair()
        let caller = try await RPCPeer.connect(fd: a, group: group, handler: echoRouter())
        let raw = RawEnd(fd: b)
        let answer = Task { try await caller.call(Ping.self, Empty(), timeout: .seconds(5)) }
        _ = await raw.readFrame()
        raw.send([0, 0, 0, 50, 1, 2, 3])
        close(b)
        await #expect(throws: WireError.connectionClosed) { try await answer.value }
        try await caller.closeFuture.get()
    }

    @Test("a call answered long before its timeout leaves nothing behind: the closed peer is freed")
    func timerDoesNotOutliveTheCall() async throws {
        let (a, b) = socketPair()
        let server = try await RPCPeer.connect(fd: a, group: group, handler: echoRouter())
        weak var gone: RPCPeer?
        do {
            let client = try await RPCPeer.connect(fd: b, group: group, handler: echoRouter())
            gone = client
            // An hour's timeout, like a job's: the answer comes at once.
            #expect(try await client.call(Echo.self, .init(value: 7, delayMs: 0), timeout: .seconds(3600)).value == 7)
            client.close()
            try await client.closeFuture.get()
        }
        server.close()
        // The channel lets go of its handlers on its own event loop, a moment after it closes.
        for _ in 0..<200 where gone != nil { try await Task.sleep(for: .milliseconds(10)) }
        #expect(gone == nil, "the peer (its channel, its buffers) is kept alive by its call's timer")
    }

    @Test("concurrent requests answered out of order all reach their callers")
    func interleaved() async throws {
        let (a, b) = socketPair()
        let server = try await RPCPeer.connect(fd: a, group: group, handler: echoRouter())
        let client = try await RPCPeer.connect(fd: b, group: group, handler: echoRouter())
        defer { client.close(); server.close() }
        let results = try await withThrowingTaskGroup(of: (Int, Int).self) { tasks in
            for i in 0..<48 {
                tasks.addTask {
                    // Later requests finish first.
                    let r = try await client.call(Echo.self, .init(value: i, delayMs: (48 - i) % 7 * 5), timeout: .seconds(10))
                    return (i, r.value)
                }
            }
            var out: [(Int, Int)] = []
            for try await r in tasks { out.append(r) }
            return out
        }
        #expect(results.count == 48)
        #expect(results.allSatisfy { $0.0 == $0.1 })
    }

    @Test("both sides can call each other over one connection")
    func bidirectional() async throws {
        let (a, b) = socketPair()
        let left = try await RPCPeer.connect(fd: a, group: group, handler: echoRouter())
        let right = try await RPCPeer.connect(fd: b, group: group, handler: echoRouter())
        defer { left.close(); right.close() }
        async let x = left.call(Echo.self, .init(value: 1, delayMs: 10))
        async let y = right.call(Echo.self, .init(value: 2, delayMs: 0))
        #expect(try await x == Echo.Result(value: 1))
        #expect(try await y == Echo.Result(value: 2))
    }

    @Test("requests are admitted in the order their frames are read: one refused there is answered at once, ahead of an earlier one still being handled, and is never handled")
    func admittedInOrder() async throws {
        let (a, b) = socketPair()
        let gate = Gate()
        let peer = try await RPCPeer.connect(fd: a, group: group, handler: gate)
        let raw = RawEnd(fd: b)
        defer { peer.close(); close(b) }
        // One write: the slow request's task cannot have run when the others are read.
        raw.send(Array([#"{"jsonrpc":"2.0","id":1,"method":"test.slow"}"#, #"{"jsonrpc":"2.0","id":2,"method":"test.refused"}"#,
                        #"{"jsonrpc":"2.0","id":3,"method":"test.fast"}"#].map { text -> [UInt8] in
            let n = UInt32(text.utf8.count)
            return [UInt8(n >> 24), UInt8((n >> 16) & 0xff), UInt8((n >> 8) & 0xff), UInt8(n & 0xff)] + Array(text.utf8)
        }.joined()))
        var replies: [Int] = []
        for _ in 0..<3 {
            let frame = await raw.readFrame()
            replies.append(frame?["id"] as? Int ?? -1)
            if frame?["id"] as? Int == 2 { #expect(raw.errorCode(of: frame) == RPCError.notAllowed) }
        }
        #expect(replies.first == 2, "the refusal waited for a handled request: \(replies)")
        #expect(Set(replies) == [1, 2, 3])
        #expect(gate.log.withLock { $0 } .filter { $0.hasPrefix("admit ") } == ["admit test.slow", "admit test.refused", "admit test.fast"])
        #expect(!gate.log.withLock { $0 }.contains("handle test.refused"))
    }

    @Test("a flood of concurrent requests beyond the limit closes the connection")
    func flood() async throws {
        let (a, b) = socketPair()
        var limits = RPCPeer.Limits()
        limits.maxInflightRequests = 4
        let peer = try await RPCPeer.connect(fd: a, group: group, handler: echoRouter(), limits: limits)
        let raw = RawEnd(fd: b)
        defer { close(b) }
        for i in 0..<20 { raw.sendJSON(#"{"jsonrpc":"2.0","id":\#(i),"method":"test.echo","params":{"value":1,"delayMs":2000}}"#) }
        try await peer.closeFuture.get()
    }

    @Test("a call that gets no answer times out and the connection stays usable")
    func timeout() async throws {
        let (a, b) = socketPair()
        let client = try await RPCPeer.connect(fd: a, group: group, handler: echoRouter())
        let server = try await RPCPeer.connect(fd: b, group: group, handler: echoRouter())
        defer { client.close(); server.close() }
        await #expect(throws: RPCTimeout.self) {
            _ = try await client.call(Echo.self, .init(value: 1, delayMs: 1000), timeout: .milliseconds(50))
        }
        #expect(try await client.call(Echo.self, .init(value: 5, delayMs: 0)) == Echo.Result(value: 5))
    }
}

/// Refuses `test.refused` at admission and records what it admits and handles;
/// `test.slow` takes 300 ms to handle.
final class Gate: RPCHandler {
    let log = Mutex<[String]>([])

    func admit(request: RPCIncoming, from peer: RPCPeer) -> RPCReply? {
        log.withLock { $0.append("admit " + request.method) }
        return request.method == "test.refused" ? .error(RPCError(code: RPCError.notAllowed, message: "not now")) : nil
    }

    func handle(request: RPCIncoming, from peer: RPCPeer) async -> RPCReply {
        log.withLock { $0.append("handle " + request.method) }
        if request.method == "test.slow" { try? await Task.sleep(for: .milliseconds(300)) }
        return .result(Empty())
    }

    func handle(notification: RPCIncoming, from peer: RPCPeer) async {}
}
