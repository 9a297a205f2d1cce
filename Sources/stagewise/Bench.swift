import ArgumentParser
import Foundation
import Learning
import Linalg

/// `stagewise bench …`: performance measured side by side in one run (never in tests).
struct Bench: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Benchmarks.", subcommands: [Kernels.self])

  struct Kernels: ParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "A whole training step of model A against raw sgemm on the same shapes.")

    @Option(help: "Batch size.") var batchSize = 128
    @Option(help: "Measured rounds (medians are reported).") var rounds = 5
    @Option(help: "Training steps per round.") var steps = 10
    @Option(help: "Write the result as JSON here.") var json: String?

    func run() throws {
      var bench = KernelBenchmark()
      bench.batchSize = batchSize
      bench.rounds = rounds
      bench.stepsPerRound = steps
      Console.print("OpenBLAS core \(BLAS.coreName); model A (784-1024×4-10), batch \(batchSize), e2e SGD step")
      let result = try bench.run { Console.print($0) }
      Console.print(String(format: "ratio (training step / raw sgemm) = %.2f (target ≥ 0.75)", result.ratio))
      if let json {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try AtomicFile.write(Array(encoder.encode(result)), to: json)
      }
    }
  }
}
