import ArgumentParser

/// `stagewise bench …`: performance measured side by side in one run (never in tests).
struct Bench: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Benchmarks.",
    subcommands: [Kernels.self, Pipeline.self, Accuracy.self, Network.self])
}
