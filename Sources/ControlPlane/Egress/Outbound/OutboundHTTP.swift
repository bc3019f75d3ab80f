import Foundation
import NIOCore
import NIOPosix
import NIOSSL

/// Makes the HTTP requests of `http` and `infer` steps on the control plane's
/// side, so that the credentials it injects never enter a sandbox and TLS to
/// the origin is verified here.
///
/// Written on NIO rather than on an HTTP client library because such a client
/// resolves names itself: between the egress decision's lookup and its own, a
/// name could come to point elsewhere (DNS rebinding). Here every hop connects
/// to exactly the address its decision checked.
///
/// One connection per hop, `Connection: close`, no pool: a step makes few
/// requests, each to whatever its URL names, and a pooled connection would
/// outlive the decision it was opened under.
final class OutboundHTTP: Sendable {
    private let group: any EventLoopGroup
    private let tls: NIOSSLContext

    /// Certificates are always fully verified, against the system's trust
    /// roots and, when `caFile` names one, the PEM certificates in it (a
    /// private CA). There is no way to turn verification off.
    init(group: any EventLoopGroup, caFile: String?) throws(OutboundError) {
        guard ClientBootstrap(validatingGroup: group) != nil else {
            throw .connection("outbound requests need NIO's own event loops")
        }
        self.group = group
        var config = TLSConfiguration.makeClientConfiguration()
        config.certificateVerification = .fullVerification
        config.trustRoots = .default
        // The client never needs the origin's close_notify: when it closes, the
        // response is complete or abandoned, and an origin that never answers
        // one must not hold a timed-out or cancelled request open.
        config.shutdownTimeout = .zero
        if let caFile {
            guard FileManager.default.isReadableFile(atPath: caFile) else { throw .tls("cannot read the CA file \(caFile)") }
            let certificates: [NIOSSLCertificate]
            do {
                certificates = try NIOSSLCertificate.fromPEMFile(caFile)
            } catch {
                throw .tls("the CA file \(caFile) is not PEM certificates: \(error)")
            }
            guard !certificates.isEmpty else { throw .tls("the CA file \(caFile) holds no PEM certificates") }
            config.additionalTrustRoots = [.certificates(certificates)]
        }
        do {
            tls = try NIOSSLContext(configuration: config)
        } catch {
            throw .tls("cannot set up TLS: \(error)")
        }
    }

    /// Makes `request`, following redirects within `limits`, each hop's host and
    /// port decided by `decide` first. `onHop` sees every redirect as it is
    /// followed or refused, also those of a request that then fails: where the
    /// request went, for the audit. `onBodyChunk` gets the final response's
    /// body as it arrives (a stream of server-sent events, say); the response
    /// still holds all of it.
    func perform(_ request: OutboundRequest, limits: OutboundLimits = OutboundLimits(), injections: [OutboundInjection] = [],
                 decide: @escaping OutboundDecision,
                 onHop: (@Sendable (OutboundHop) -> Void)? = nil,
                 onBodyChunk: (@Sendable ([UInt8]) async -> Void)? = nil) async throws(OutboundError) -> OutboundResponse {
        let call = try OutboundCall(request, injections: injections, limits: limits)
        let deadline = ContinuousClock.now.advanced(by: request.timeout)
        do {
            return try await withThrowingTaskGroup(of: OutboundResponse?.self) { group in
                group.addTask {
                    try await self.follow(call, limits: limits, deadline: deadline, decide: decide, onHop: onHop, onBodyChunk: onBodyChunk)
                }
                // The deadline: when it comes first, cancelling the group closes the connection.
                group.addTask {
                    try await Task.sleep(until: deadline, clock: .continuous)
                    return nil
                }
                defer { group.cancelAll() }
                guard let response = try await group.next() ?? nil else { throw OutboundError.timeout }
                return response
            }
        } catch {
            if Task.isCancelled { throw .cancelled }
            if let error = error as? OutboundError { throw error }
            throw .connection("\(error)")
        }
    }

    private func follow(_ first: OutboundCall, limits: OutboundLimits, deadline: ContinuousClock.Instant, decide: OutboundDecision,
                        onHop: (@Sendable (OutboundHop) -> Void)?,
                        onBodyChunk: (@Sendable ([UInt8]) async -> Void)?) async throws(OutboundError) -> OutboundResponse {
        var call = first
        var hops: [OutboundHop] = []
        var followed = 0
        func record(_ hop: OutboundHop) {
            hops.append(hop)
            onHop?(hop)
        }
        var address: (ip: String, sockaddr: Data)
        switch await checked(call.url, decide) {
        case let .success(a): address = a
        case let .failure(denial): throw .refused(host: call.url.host.text, port: call.url.port, reason: denial.reason)
        }
        while true {
            let outcome = try await OutboundExchange.run(call, at: address, tls: tls, group: group, maxBodyBytes: limits.maxResponseBytes,
                                                         deadline: deadline, onBodyChunk: onBodyChunk)
            switch outcome {
            case let .final(status, headers, body):
                return OutboundResponse(status: status, headers: headers, body: body, url: call.url.text, hops: hops)
            case let .redirect(status, location):
                let next: OutboundURL
                switch call.url.resolve(location) {
                case let .success(url): next = url
                case let .failure(why):
                    record(.refused(to: location, reason: why.text))
                    throw .redirectRefused(to: location, reason: why.text)
                }
                guard followed < limits.maxRedirects else {
                    record(.refused(to: next.text, reason: "more than \(limits.maxRedirects) redirects"))
                    throw .tooManyRedirects(limits.maxRedirects)
                }
                // What was asked for over TLS is not handed on in the clear.
                if call.url.scheme == .https, next.scheme == .http {
                    record(.refused(to: next.text, reason: "a redirect from https to http"))
                    throw .redirectRefused(to: next.text, reason: "a redirect from https to http")
                }
                switch await checked(next, decide) {
                case let .success(a): address = a
                case let .failure(denial):
                    record(.refused(to: next.text, reason: denial.reason))
                    throw .redirectRefused(to: next.text, reason: denial.reason)
                }
                record(.followed(from: call.url.text, to: next.text, status: status))
                call = call.redirected(to: next, status: status)
                followed += 1
            }
        }
    }

    /// The decision for `url`'s host and port. For an IP literal it must be
    /// that very address: TLS verifies a literal against the address connected to.
    private func checked(_ url: OutboundURL, _ decide: OutboundDecision) async -> Result<(ip: String, sockaddr: Data), EgressDenial> {
        let decision = await decide(url.host, url.port)
        if url.host.isLiteral, case let .success(address) = decision, address.ip != url.host.text {
            return .failure(EgressDenial("the decision for \(url.host.text) named another address, \(address.ip)"))
        }
        return decision
    }
}
