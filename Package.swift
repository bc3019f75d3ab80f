// swift-tools-version:6.0
import PackageDescription

let strict: [SwiftSetting] = [.enableUpcomingFeature("ExistentialAny")]

let package = Package(
    name: "skelm",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "skelm", targets: ["CLI"]),
        .executable(name: "skelm-bench", targets: ["Bench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-extras", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "4.5.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/weichsel/ZIPFoundation", from: "0.9.20"),
        .package(url: "https://github.com/vapor/multipart-kit", from: "4.7.1"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
    ],
    targets: [
        // libseccomp has no Swift package: a system-library target over its header.
        .systemLibrary(name: "CSeccomp", path: "Sources/CSeccomp", pkgConfig: "libseccomp",
                       providers: [.apt(["libseccomp-dev"])]),
        // The few syscalls Glibc's module does not export (unshare, clone, Landlock,
        // prctl variants) and everything that must run between fork and exec.
        .target(name: "CSandbox", dependencies: ["CSeccomp"], path: "Sources/CSandbox"),
        // The workflow model and its expression language: plain data both sides share.
        .target(name: "Workflow", swiftSettings: strict),
        // Swift Concurrency's global executor, moved onto a worker's event loop (Wire's EventLoopAsGlobalExecutor).
        .target(name: "CExecutorHook", path: "Sources/CExecutorHook"),
        .target(name: "Wire", dependencies: [
            "Workflow", "CExecutorHook",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOExtras", package: "swift-nio-extras"),
        ], swiftSettings: strict),
        .target(name: "Sandbox", dependencies: ["CSandbox", "Wire"], swiftSettings: strict),
        .target(name: "Worker", dependencies: [
            "Wire", "Sandbox", "Workflow", "CSandbox",
            .product(name: "Logging", package: "swift-log"),
            // The MCP gate an agent reaches its tools through: HTTP on loopback.
            .product(name: "NIOHTTP1", package: "swift-nio"),
        ], swiftSettings: strict),
        .target(name: "ControlPlane", dependencies: [
            "Wire", "Sandbox", "Workflow",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Yams", package: "Yams"),
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "GRDB", package: "GRDB.swift"),
            // `storage.driver: postgres`: several gateways share one database.
            .product(name: "PostgresNIO", package: "postgres-nio"),
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "HTTPTypes", package: "swift-http-types"),
            .product(name: "Metrics", package: "swift-metrics"),
            .product(name: "Prometheus", package: "swift-prometheus"),
            .product(name: "ZIPFoundation", package: "ZIPFoundation"),
            .product(name: "MultipartKit", package: "multipart-kit"),
            .product(name: "Histogram", package: "hdrhistogram-swift"),
            // `http` and `infer` steps: the control plane speaks TLS to origins
            // itself, so credentials it injects never enter a sandbox.
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
        ],
        // docs/openapi.yaml (linked here), compiled into the binary for `GET /openapi.yaml`:
        // the gateway serves the very document the docs and the tests use.
        resources: [.embedInCode("HTTP/OpenAPI/openapi.yaml")],
        swiftSettings: strict),
        // How the CLI, the tests and the benchmark talk to a running gateway.
        .target(name: "SkelmClient", dependencies: [
            "Workflow", "Wire",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
        ], swiftSettings: strict),
        .executableTarget(name: "CLI", dependencies: [
            "SkelmClient",
            "ControlPlane", "Worker", "Wire", "Sandbox", "Workflow",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            .product(name: "MultipartKit", package: "multipart-kit"),
        ], path: "Sources/CLI", swiftSettings: strict,
        // Bind every libc symbol at start-up (full RELRO): the worker template
        // resolves them once, instead of every forked worker resolving (and
        // copying the page of) each symbol it first calls.
        linkerSettings: [.unsafeFlags(["-Xlinker", "-z", "-Xlinker", "now", "-Xlinker", "-z", "-Xlinker", "relro"])]),
        // `make bench`: a real gateway under load, printed as a table.
        // The benchmark's floor: a run's processes and sandbox in plain C, without the gateway.
        .target(name: "CBenchFloor", dependencies: ["CSandbox"], path: "Sources/BenchFloor"),
        .executableTarget(name: "Bench", dependencies: ["SkelmClient", "Workflow", "ControlPlane", "PostgresFixture", "CBenchFloor",
                                                  .product(name: "GRDB", package: "GRDB.swift"),
                                                  .product(name: "ArgumentParser", package: "swift-argument-parser")], path: "Sources/Bench", swiftSettings: strict),
        .testTarget(name: "WireTests", dependencies: ["Wire"], swiftSettings: strict),
        // JSONSchemaTestSuite/: the official suite's cases, read by the tests as files.
        .testTarget(name: "WorkflowTests", dependencies: ["Workflow"], exclude: ["JSONSchemaTestSuite"], swiftSettings: strict),
        .testTarget(name: "SandboxTests", dependencies: ["Sandbox", "ControlPlane", "Wire"], swiftSettings: strict),
        // A throwaway PostgreSQL cluster (initdb in a temporary directory) the store tests share.
        .target(name: "PostgresFixture", path: "Tests/PostgresFixture", swiftSettings: strict),
        .testTarget(name: "GatewayTests", dependencies: ["SkelmClient", "Workflow", "PostgresFixture"],
                    exclude: ["schemathesis.toml"], swiftSettings: strict),
        .testTarget(name: "ControlPlaneTests", dependencies: ["ControlPlane", "Wire", "Sandbox", "PostgresFixture"], swiftSettings: strict),
    ]
)
