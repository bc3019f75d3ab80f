import Metrics
import Prometheus

/// The process's one Prometheus registry, and swift-metrics bootstrapped onto it.
///
/// `MetricsSystem.bootstrap` may run once per process, and a test process
/// builds several gateways: a static `let` is initialised exactly once (and
/// thread-safely) however many gateways read it.
public enum MetricsBootstrap {
    /// What `GET /metrics` emits.
    public static let registry = PrometheusCollectorRegistry()

    /// The gateway's instruments are made with this factory explicitly, so they
    /// land in `registry` even if something else bootstrapped swift-metrics first.
    static let factory: PrometheusMetricsFactory = {
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.durationHistogramBuckets = [
            GatewayMetrics.Name.stepDuration: stepBuckets,
            GatewayMetrics.Name.spawnDuration: spawnBuckets,
            GatewayMetrics.Name.dispatchDuration: spawnBuckets,
        ]
        MetricsSystem.bootstrap(factory)
        return factory
    }()

    /// A step runs from milliseconds (an echo) to an hour (a build, an approval
    /// waiting for a human).
    static let stepBuckets: [Duration] = [
        .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
        .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10),
        .seconds(30), .seconds(60), .seconds(300), .seconds(900), .seconds(3600),
    ]

    /// A template fork takes about 4 ms and an exec about 10 ms: the buckets are
    /// fine there, and reach a second for a host under load.
    static let spawnBuckets: [Duration] = [
        .milliseconds(1), .milliseconds(2), .milliseconds(3), .milliseconds(4), .milliseconds(6), .milliseconds(8),
        .milliseconds(10), .milliseconds(15), .milliseconds(25), .milliseconds(50), .milliseconds(100),
        .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500),
    ]

    /// Call before any swift-metrics instrument of the process is made (the
    /// gateway does, when it builds its event hub): instruments made before the
    /// bootstrap report to no one.
    public static func ensure() { _ = factory }
}
