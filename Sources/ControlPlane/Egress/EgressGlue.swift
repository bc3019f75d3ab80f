import NIOCore

/// Relays bytes between two channels of one event loop, one handler on each,
/// each holding the other. Hand-written because NIO ships no public handler for
/// this: its connect-proxy example carries one, which this follows, with two
/// changes. A side that is gone takes the other down only once what was
/// already written to the other is out (the example closes at once, dropping
/// the tail of a response to a slow client); and an idle relay is closed.
///
/// Backpressure: a side is read only while the other side can take more
/// (writability), so a fast upstream cannot fill the gateway's memory for a
/// slow client. Half-close: a side's end of input ends the other's output, as
/// HTTP clients use it (request sent, response still to come); NIO closes a
/// channel fully once both directions are done.
final class EgressGlue: ChannelDuplexHandler {
    typealias InboundIn = NIOAny
    typealias OutboundIn = NIOAny
    typealias OutboundOut = NIOAny

    /// What the blocking relay this replaces (`Sockets.relay`) allowed: five
    /// minutes without a byte either way. Each side's `IdleStateHandler` counts
    /// its reads and its writes, so either one sees all the relay's traffic.
    static let idleTimeout = TimeAmount.minutes(5)

    private var partner: EgressGlue?
    private var context: ChannelHandlerContext?
    /// A read the channel asked for while the partner could take no more.
    private var pendingRead = false

    private init() {}

    static func matchedPair() -> (EgressGlue, EgressGlue) {
        let (a, b) = (EgressGlue(), EgressGlue())
        a.partner = b
        b.partner = a
        return (a, b)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    /// Also breaks the pair's reference cycle, as each channel closes.
    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        partner = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        partner?.context?.write(data, promise: nil)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        partner?.context?.flush()
        context.fireChannelReadComplete()
    }

    func channelInactive(context: ChannelHandlerContext) {
        partner?.closeAfterWrites(.all)
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, event == .inputClosed {
            partner?.closeAfterWrites(.output)
        } else if event is IdleStateHandler.IdleStateEvent {
            context.close(promise: nil)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { partner?.resumeReading() }
        context.fireChannelWritabilityChanged()
    }

    func read(context: ChannelHandlerContext) {
        if partner?.context?.channel.isWritable == true {
            context.read()
        } else {
            pendingRead = true
        }
    }

    private func resumeReading() {
        guard pendingRead, let context else { return }
        pendingRead = false
        context.read()
    }

    /// An empty write completes only after every write before it, so the close
    /// follows the last byte out (or the write's failure, on a dead socket).
    private func closeAfterWrites(_ mode: CloseMode) {
        guard let context else { return }
        let written = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(NIOAny(ByteBuffer()), promise: written)
        written.futureResult.assumeIsolated().whenComplete { _ in context.close(mode: mode, promise: nil) }
    }
}

@available(*, unavailable)
extension EgressGlue: Sendable {}
