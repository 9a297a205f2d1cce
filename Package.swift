// swift-tools-version:6.0
// Stagewise: pipeline-parallel training without end-to-end backpropagation.
import PackageDescription

let package = Package(
  name: "Stagewise",
  platforms: [.macOS(.v13)],
  products: [
    .executable(name: "stagewise", targets: ["stagewise"])
  ],
  dependencies: [
    .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    .package(url: "https://github.com/jpsim/Yams", from: "5.0.0"),
  ],
  targets: [
    // MARK: C libraries at the edges: one shim each, one Swift module imports each.
    .systemLibrary(
      name: "CBLAS", pkgConfig: "openblas",
      providers: [.apt(["libopenblas-dev"])]),
    .systemLibrary(
      name: "CZeroMQ", pkgConfig: "libzmq",
      providers: [.apt(["libzmq3-dev"])]),
    .systemLibrary(
      name: "CDNNL", providers: [.apt(["libdnnl-dev"])]),  // oneDNN: the convolutions
    .systemLibrary(name: "CMalloc"),  // glibc's mallopt
    // CPUID and an FMA loop: what the processor is and can do. Always optimised: at -O0 the
    // loop's accumulators live in memory and the "peak" of a debug build is 1 GFLOP/s.
    .target(name: "CCPU", cSettings: [.unsafeFlags(["-O2"])]),
    .systemLibrary(
      name: "CZlib", pkgConfig: "zlib",
      providers: [.apt(["zlib1g-dev"])]),

    // MARK: Wrappers (the only importers of the C modules).
    .target(name: "Hardware", dependencies: ["CCPU"]),
    .target(
      name: "Linalg", dependencies: ["CBLAS", "CDNNL", "Hardware"],
      // Debian's OpenMP build of OpenBLAS (libopenblas0-openmp), found before the pthread
      // build that the alternatives system prefers: then OpenBLAS, oneDNN and the elementwise
      // loops share one OpenMP team instead of two thread pools spinning against each other.
      linkerSettings: [.unsafeFlags(["-Xlinker", "-rpath", "-Xlinker", "/usr/lib/x86_64-linux-gnu/openblas-openmp"])]),
    .target(name: "ZMQ", dependencies: ["CZeroMQ"]),

    // MARK: The library proper.
    .target(name: "NN", dependencies: ["Linalg"]),
    .target(name: "Memory", dependencies: ["CMalloc"]),  // the heap policy and resident size of this process
    .target(name: "Datasets", dependencies: ["CZlib", "NN"]),
    .target(name: "Wire"),
    .target(name: "Telemetry"),
    .target(
      name: "Runtime",
      dependencies: ["Learning", "NN", "Datasets", "Linalg", "Memory", "ZMQ", "Wire", "Telemetry"]),
    // Slurm and Kubernetes: where a worker finds its scheduler, and the manifests that start them.
    .target(name: "Clusters", dependencies: ["Learning", .product(name: "Yams", package: "Yams")]),
    // The measuring tools: kernels, pipeline, accuracy, the PyTorch yardstick, their charts.
    .target(
      name: "Benchmarks",
      dependencies: ["Runtime", "Learning", "NN", "Datasets", "Linalg", "Hardware", "Memory", "Telemetry"]),
    // The trained network for other runtimes: ONNX, written field by field.
    .target(name: "Export", dependencies: ["Learning", "NN", "Datasets"]),
    .target(
      name: "Learning",
      dependencies: ["NN", "Datasets", "Hardware", .product(name: "Yams", package: "Yams")]),

    // MARK: The one binary.
    .executableTarget(
      name: "stagewise",
      dependencies: [
        "Learning", "NN", "Datasets", "Linalg", "Hardware", "Memory", "ZMQ", "Runtime", "Telemetry", "Clusters", "Benchmarks", "Export",
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
      ]),

    // The volume fuzzer of a live stage (scripts/fuzz.sh).
    .executableTarget(
      name: "stagewise-fuzz",
      dependencies: ["Learning", "NN", "Runtime", "Wire", "ZMQ", .product(name: "ArgumentParser", package: "swift-argument-parser")]),

    // MARK: Tests.
    .target(name: "TestSupport", dependencies: ["Learning", "Datasets"], path: "Tests/TestSupport"),
    .testTarget(name: "LinalgTests", dependencies: ["Linalg", "Hardware"]),
    .testTarget(name: "NNTests", dependencies: ["NN"]),
    .testTarget(name: "DatasetsTests", dependencies: ["Datasets", "NN", "TestSupport"]),
    .testTarget(
      name: "LearningTests", dependencies: ["Learning", "NN", "Datasets", "TestSupport"]),
    .testTarget(name: "WireTests", dependencies: ["Wire"]),
    .testTarget(name: "ClustersTests", dependencies: ["Clusters", "Learning", .product(name: "Yams", package: "Yams")]),
    .testTarget(name: "RuntimeTests", dependencies: ["Runtime", "Learning", "Wire", "Telemetry", "Datasets", "TestSupport"]),
    .testTarget(
      name: "IntegrationTests",
      dependencies: ["TestSupport", "ZMQ", "Datasets", "Wire", "Runtime", "Learning", "NN", "Linalg", "Hardware", "Telemetry", "stagewise"]),
  ]
)
