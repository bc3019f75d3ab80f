import Foundation
import NIOCore
import NIOPosix
import Sandbox
import Workflow

#if canImport(Glibc)
import Glibc
#endif

/// One connection from a worker's forwarder, from accept until it relays or is
/// refused, its checks in the order `docs/permissions.md` gives them: the
/// preamble line names job and step; the caller must be that job's worker
/// (SO_PEERCRED); the job must have a connection slot free; the step must be
/// running there; then the request head is read, parsed, decided, and the
/// checked address connected.
///
/// Nothing here blocks its event loop: the wait for a step's `step.started` is
/// answered by the run service when it handles the start, and the decision, which resolves names, runs on
/// `EgressResolver`'s threads. Reading is explicit (the channel's `autoRead` is
/// off until the relay): bytes are asked for only while the preamble or the
/// head is incomplete, so what a client sends before its answer waits in its
/// socket, not in the gateway's memory.
final class EgressConnection: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    static let preambleLimit = 512
    static let headLimit = 65_536
    /// From accept to a complete request head; a caller that dribbles its head
    /// does not hold a slot longer than this.
    static let headTimeout = TimeAmount.seconds(30)
    /// A step's first connection can reach the proxy before the worker's
    /// `step.started` has been handled: its start is waited for this long.
    /// Events are persisted (fsynced) one after the other, so on a busy disk
    /// the start can trail the connection by seconds; as for secrets.
    static let startWait = TimeAmount.seconds(30)
    static let connectTimeout = TimeAmount.seconds(10)
    /// After a refusal, what the caller still sends is read and dropped, this
    /// much and this long at most (see `refuse`).
    static let drainLimit = 65_536
    static let drainTime = TimeAmount.seconds(1)

    private enum Phase { case preamble, checking, head, deciding, connecting, draining, done }

    private let proxy: EgressProxy
    /// Over the proxy's `maxConnections`: answered 503 and closed.
    private let busy: Bool
    private var phase = Phase.preamble
    /// Bytes read and not yet consumed: the preamble, the head, and whatever
    /// followed them in the same reads (sent upstream first when relaying).
    private var buffer = ByteBuffer()
    /// Where the search for the head's end resumes.
    private var scanned = 0
    /// The caller's end of input (half-closure is allowed, so it is an event).
    private var inputClosed = false
    private var timedOut = false
    private var timer: Scheduled<Void>?
    /// The wait for the step's start, while it lasts, and its limit.
    private var pendingStart: Int?
    private var startTimer: Scheduled<Void>?
    private var drained = 0
    private var jobId = ""
    private var step = ""
    /// Set once the job and its worker are known: refusals before that name no job.
    private var job: EgressDirectory.Job?

    init(proxy: EgressProxy, busy: Bool) {
        self.proxy = proxy
        self.busy = busy
    }

    func channelActive(context: ChannelHandlerContext) {
        context.fireChannelActive()
        if busy {
            // Nothing read and not audited: the caller is not identified yet,
            // and a flood of these must cost nothing.
            phase = .done
            let answer = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(string: answer)))
                .assumeIsolated().whenComplete { _ in context.close(promise: nil) }
            return
        }
        timer = context.eventLoop.assumeIsolated().scheduleTask(in: Self.headTimeout) { [self] in
            timedOut = true
            advance(context)
        }
        context.read()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        switch phase {
        case .draining: drained += bytes.readableBytes
        case .done: break
        default: buffer.writeBuffer(&bytes)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        advance(context)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, event == .inputClosed {
            inputClosed = true
            advance(context)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        phase = .done
        timer?.cancel()
        stopWaitingForStart()
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        stopWaitingForStart()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        phase = .done
        context.close(promise: nil)
    }

    /// Moves on with what has been read: called after every read, at the end
    /// of input, at the head's deadline, and when a check lets reading resume.
    private func advance(_ context: ChannelHandlerContext) {
        switch phase {
        case .preamble:
            let view = buffer.readableBytesView.prefix(Self.preambleLimit)
            if let end = view.firstIndex(of: UInt8(ascii: "\n")) {
                let line = buffer.readBytes(length: end - view.startIndex + 1) ?? []
                phase = .checking
                check(context, line)
            } else if view.count >= Self.preambleLimit || inputClosed || timedOut {
                // Not a forwarder: nothing to answer, nobody to audit.
                phase = .done
                context.close(promise: nil)
            } else {
                context.read()
            }
        case .head:
            let view = buffer.readableBytesView.prefix(Self.headLimit)
            if let length = Self.headLength(view, from: scanned) {
                let head = buffer.readBytes(length: length) ?? []
                timer?.cancel()
                phase = .deciding
                decide(context, head)
            } else if view.count >= Self.headLimit || inputClosed || timedOut {
                refuse(context, why: "not an HTTP proxy request", status: "400 Bad Request")
            } else {
                scanned = max(0, view.count - 3)
                context.read()
            }
        case .draining:
            if inputClosed || drained >= Self.drainLimit {
                context.close(promise: nil)
            } else {
                context.read()
            }
        case .checking, .deciding, .connecting, .done:
            break
        }
    }

    /// The length of the head up to and including its CRLFCRLF, searched from `offset`.
    static func headLength(_ view: ByteBufferView, from offset: Int) -> Int? {
        var i = view.startIndex + offset
        while i + 3 < view.endIndex {
            if view[i] == 13, view[i + 1] == 10, view[i + 2] == 13, view[i + 3] == 10 { return i + 4 - view.startIndex }
            i += 1
        }
        return nil
    }

    private func check(_ context: ChannelHandlerContext, _ line: [UInt8]) {
        guard let preamble = String(bytes: line.dropLast(), encoding: .utf8)?.split(separator: " ").map(String.init),
              preamble.count == 3, preamble[0] == Egress.preamble else {
            phase = .done
            return context.close(promise: nil)
        }
        (jobId, step) = (preamble[1], preamble[2])
        guard let job = proxy.directory.job(jobId), let worker = proxy.workerOf(jobId) else {
            return refuse(context, why: "no such job")
        }
        self.job = job
        peerCredentials(context) { [self] cred in
            guard phase == .checking else { return }
            // Only the job's worker process itself may speak here: its forwarder
            // threads live in it. A step's processes share the worker's uid, so the
            // uid alone cannot tell them apart; the pid can (the worker is alive for
            // as long as its job, so its pid cannot have been reused).
            guard let cred, cred.pid == worker.pid, cred.uid == worker.uid else {
                let who = cred.map { "pid \($0.pid), uid \($0.uid)" } ?? "unknown"
                return refuse(context, why: "the caller (\(who)) is not the forwarder of job \(jobId)'s worker", claimed: true)
            }
            let limit = EgressProxy.maxConnectionsPerJob
            guard proxy.directory.openConnection(jobId: jobId, limit: limit) else {
                return refuse(context, why: "job \(jobId) already has \(limit) connections open", status: "503 Service Unavailable")
            }
            // Held until the connection closes, whichever way it does.
            context.channel.closeFuture.whenComplete { [directory = proxy.directory, jobId] _ in
                directory.closeConnection(jobId: jobId)
            }
            waitUntilRunning(context)
        }
    }

    /// The kernel's word on who connected (the forwarder's process: SO_PEERCRED
    /// records the connecting process, whatever it did since).
    private func peerCredentials(_ context: ChannelHandlerContext, _ then: @escaping (PeerCredentials?) -> Void) {
        guard let cred = PeerCredentials.of(context.channel) else { return then(nil) }
        cred.assumeIsolated().whenComplete { then(try? $0.get()) }
    }

    /// The step must be one the control plane knows is running in that worker
    /// now. If its start has not been handled yet, the answer comes when it
    /// is (or when the segment ends), or no later than `startWait`.
    private func waitUntilRunning(_ context: ChannelHandlerContext) {
        guard phase == .checking else { return }
        let loop = context.eventLoop
        let here = NIOLoopBound((handler: self, context: context), eventLoop: loop)
        let wait = proxy.directory.whenRunning(jobId: jobId, step: step) { running in
            loop.execute { here.value.handler.started(here.value.context, running) }
        }
        guard let wait else { return }
        pendingStart = wait
        startTimer = loop.assumeIsolated().scheduleTask(in: Self.startWait) { [self] in
            pendingStart = nil
            if proxy.directory.stopWaiting(jobId: jobId, wait) { started(context, false) }
        }
    }

    private func started(_ context: ChannelHandlerContext, _ running: Bool) {
        pendingStart = nil
        startTimer?.cancel()
        guard phase == .checking else { return }
        if running {
            phase = .head
            advance(context)
        } else {
            refuse(context, why: "step \(step) is not running in job \(jobId)", claimed: true)
        }
    }

    /// The connection is gone before its step started: its wait must not stay
    /// in the segment (a step that connects and closes in a loop would pile
    /// them up there until the segment's end).
    private func stopWaitingForStart() {
        startTimer?.cancel()
        if let wait = pendingStart {
            pendingStart = nil
            _ = proxy.directory.stopWaiting(jobId: jobId, wait)
        }
    }

    private func decide(_ context: ChannelHandlerContext, _ head: [UInt8]) {
        let request: EgressProxy.Request
        switch EgressProxy.parse(head) {
        case let .failure(why): return refuse(context, why: why.reason, status: "400 Bad Request")
        case let .success(r): request = r
        }
        let policy = job?.policies[StepPath.id(of: step)] ?? StepPolicy()
        proxy.resolver.run(jobId: jobId, on: context.eventLoop) { [proxy] in proxy.decide(request, policy: policy) }
            .assumeIsolated().whenComplete { [self] result in
                guard phase == .deciding else { return }
                switch result {
                case .failure:
                    // The resolver's threads are stopped: the gateway is stopping.
                    phase = .done
                    context.close(promise: nil)
                case let .success(.failure(why)):
                    refuse(context, why: why.reason, host: request.host.text, port: request.port)
                case let .success(.success(address)):
                    connect(context, request, to: address)
                }
            }
    }

    /// Connects to the address `decide` checked, on this connection's event
    /// loop (the relay's two handlers touch each other directly).
    private func connect(_ context: ChannelHandlerContext, _ request: EgressProxy.Request, to address: (ip: String, sockaddr: Data)) {
        phase = .connecting
        let unreachable = { [self] (why: String) in
            refuse(context, why: "cannot connect to \(address.ip): \(why)", host: request.host.text, port: request.port,
                   status: "502 Bad Gateway")
        }
        guard let target = Self.socketAddress(address) else { return unreachable(String(cString: strerror(EAFNOSUPPORT))) }
        let (client, upstream) = EgressGlue.matchedPair()
        let upstreamGlue = NIOLoopBound(upstream, eventLoop: context.eventLoop)
        ClientBootstrap(group: context.eventLoop)
            .connectTimeout(Self.connectTimeout)
            .channelOption(.allowRemoteHalfClosure, value: true)
            // Off until the client's side is glued too: nothing the upstream
            // sends can arrive before it has somewhere to go.
            .channelOption(.autoRead, value: false)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers([IdleStateHandler(allTimeout: EgressGlue.idleTimeout), upstreamGlue.value])
                }
            }
            .connect(to: target)
            .assumeIsolated().whenComplete { [self] result in
                switch result {
                case let .failure(error):
                    guard phase == .connecting else { return }
                    unreachable(Self.reason(error))
                case let .success(channel):
                    guard phase == .connecting, context.channel.isActive else { return channel.close(promise: nil) }
                    relay(context, request, address, channel, client)
                }
            }
    }

    private func relay(_ context: ChannelHandlerContext, _ request: EgressProxy.Request, _ address: (ip: String, sockaddr: Data),
                       _ upstream: any Channel, _ glue: EgressGlue) {
        phase = .done
        GatewayMetrics.egress(allowed: true)
        proxy.audit.record(actor: "gateway", action: "egress.allowed", runId: job?.runId, details: [
            "host": request.host.text, "port": "\(request.port)", "address": address.ip, "step": step, "workflow": job?.workflow ?? "",
            "method": request.connect ? "CONNECT" : "HTTP",
        ])
        if request.connect {
            context.write(wrapOutboundOut(context.channel.allocator.buffer(string: "HTTP/1.1 200 Connection established\r\n\r\n")), promise: nil)
        } else {
            upstream.write(upstream.allocator.buffer(bytes: request.head), promise: nil)
        }
        // What the client sent after its head (a body, an eager TLS hello) goes first.
        if buffer.readableBytes > 0 {
            upstream.write(buffer, promise: nil)
            buffer = ByteBuffer()
        }
        context.flush()
        upstream.flush()
        // The client's end of input came before the relay could pass it on.
        if inputClosed { upstream.close(mode: .output, promise: nil) }
        let channel = context.channel
        do {
            let pipeline = context.pipeline.syncOperations
            try pipeline.addHandlers([IdleStateHandler(allTimeout: EgressGlue.idleTimeout), glue])
            pipeline.removeHandler(context: context, promise: nil)
            try channel.syncOptions?.setOption(.autoRead, value: true)
            try upstream.syncOptions?.setOption(.autoRead, value: true)
        } catch {
            channel.close(promise: nil)
            upstream.close(promise: nil)
        }
    }

    /// Answers, audits (at the job's rate: `admitDenial`) and ends the connection.
    /// `claimed`: the step name is what an unverified caller said, recorded as
    /// such rather than as the step's own.
    private func refuse(_ context: ChannelHandlerContext, why: String, host: String = "?", port: Int = 0,
                        status: String = "403 Forbidden", claimed: Bool = false) {
        phase = .draining
        timer?.cancel()
        buffer.clear()
        // Counted every time, including the denials the audit's rate limit leaves out.
        GatewayMetrics.egress(allowed: false)
        if let suppressed = proxy.directory.admitDenial(jobId: jobId) {
            var details = [
                "host": host, "port": "\(port)", claimed ? "claimedStep" : "step": step, "workflow": job?.workflow ?? "", "reason": why,
            ]
            if suppressed > 0 { details["suppressedBefore"] = "\(suppressed)" }
            proxy.audit.record(actor: "gateway", action: "egress.denied", runId: job?.runId, details: details)
        }
        let body = "skelm egress: \(why)\n"
        let answer = "HTTP/1.1 \(status)\r\nContent-Type: text/plain\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)"
        context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(string: answer)))
            .assumeIsolated().whenComplete { [self] _ in
                guard phase == .draining, !inputClosed else { return context.close(promise: nil) }
                // Unread request bytes would turn the close into a reset that
                // discards the answer: end our side, then read what is left
                // (bounded) first.
                context.close(mode: .output, promise: nil)
                timer = context.eventLoop.assumeIsolated().scheduleTask(in: Self.drainTime) { context.close(promise: nil) }
                advance(context)
            }
    }

    /// The address `decide` resolved, as NIO takes it: the very bytes, no lookup.
    static func socketAddress(_ address: (ip: String, sockaddr: Data)) -> SocketAddress? {
        address.sockaddr.withUnsafeBytes { raw -> SocketAddress? in
            guard raw.count >= MemoryLayout<sa_family_t>.size else { return nil }
            switch Int32(raw.loadUnaligned(as: sa_family_t.self)) {
            case AF_INET where raw.count >= MemoryLayout<sockaddr_in>.size:
                return SocketAddress(raw.loadUnaligned(as: sockaddr_in.self), host: address.ip)
            case AF_INET6 where raw.count >= MemoryLayout<sockaddr_in6>.size:
                return SocketAddress(raw.loadUnaligned(as: sockaddr_in6.self), host: address.ip)
            default:
                return nil
            }
        }
    }

    /// A connect failure in the words strerror gives it.
    static func reason(_ error: any Error) -> String {
        if let error = error as? IOError { return String(cString: strerror(error.errnoCode)) }
        if let error = error as? ChannelError, case .connectTimeout = error { return String(cString: strerror(ETIMEDOUT)) }
        return "\(error)"
    }
}

@available(*, unavailable)
extension EgressConnection: Sendable {}
