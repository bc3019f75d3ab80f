import Foundation
import Wire
import Workflow

/// What the control plane needs to make a request for a step: the client
/// that speaks TLS to origins, and the egress proxy's decision (the step's
/// `allowHosts`, the address classes, the gateway's own ports), so a request
/// a step makes through the control plane is held to exactly what one through
/// the proxy is.
public final class StepRequester: Sendable {
    typealias Decide = @Sendable (_ host: HostName, _ port: Int, _ policy: StepPolicy, _ jobId: String) async
        -> Result<(ip: String, sockaddr: Data), EgressDenial>

    let outbound: OutboundHTTP
    let decide: Decide

    init(outbound: OutboundHTTP, decide: @escaping Decide) {
        self.outbound = outbound
        self.decide = decide
    }

    /// Backed by a running gateway's egress proxy. Its decisions resolve names,
    /// which blocks: they run on the proxy's resolver threads, shared fairly
    /// between jobs as the proxy's own are.
    public convenience init(proxy: EgressProxy, caFile: String?) throws {
        self.init(outbound: try OutboundHTTP(group: proxy.group, caFile: caFile), decide: { host, port, policy, jobId in
            let request = EgressProxy.Request(connect: true, host: host, port: port, head: [])
            do {
                return try await proxy.resolver.run(jobId: jobId, on: proxy.group.next()) { proxy.decide(request, policy: policy) }.get()
            } catch {
                return .failure(EgressDenial("the decision could not be made: \(error)"))
            }
        })
    }
}

/// Secret values redacted from what a step's worker is handed back: a
/// response that echoes an injected credential does not deliver it.
enum EchoRedaction {
    static func redact(_ bytes: [UInt8], values: [String]) -> [UInt8] {
        var out = bytes
        for value in values where value.utf8.count >= 4 {
            let needle = Array(value.utf8), mark = Array("[REDACTED]".utf8)
            var result: [UInt8] = []
            result.reserveCapacity(out.count)
            var i = 0
            while i < out.count {
                if out[i] == needle[0], i + needle.count <= out.count, Array(out[i..<i + needle.count]) == needle {
                    result += mark
                    i += needle.count
                } else {
                    result.append(out[i])
                    i += 1
                }
            }
            out = result
        }
        return out
    }
}
