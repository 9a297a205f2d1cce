import ArgumentParser
import Benchmarks
import Datasets
import Foundation
import Learning
import Linalg
import Memory
import NN
import Runtime

extension Bench {
  struct Kernels: ParsableCommand {
    static let configuration = CommandConfiguration(
      abstract:
        "The FMA peak, raw sgemm, and whole training steps of model A (MLP) and model B (CNN) on 1 "
        + "core and all cores, beside PyTorch."
    )

    @Option(help: "Measured rounds (medians are reported).") var rounds = 5
    @Option(help: "Training steps per round.") var steps = 10
    @Option(help: "Model A's batch size (model B's is half of it).") var batchSize = 128
    @Flag(help: "Leave out the PyTorch column.") var noPytorch = false
    @Option(
      help:
        ArgumentHelp(
          "Python with PyTorch (default: .venv-bench/bin/python from scripts/baseline/setup.sh, "
            + "else "
            + "python3).")
    ) var python: String?
    @Option(help: "Write the result as JSON here.") var json: String?
    @Option(help: "Write the report (Markdown) here.") var out: String?

    func run() throws {
      Allocator.keepFreedMemory()
      var bench = KernelBenchmark()
      bench.rounds = rounds
      bench.stepsPerRound = steps
      bench.pytorch = noPytorch ? nil : PyTorchBaseline(python: python)
      bench.batchSize = batchSize
      Console.print(KernelReport.current.line)  // first, on stdout: what every figure below ran on
      let result = try bench.run { Console.status($0) }
      let report = KernelBenchmark.report(result)
      Console.print(
        report.split(separator: "\n", omittingEmptySubsequences: false).dropFirst().joined(
          separator: "\n"))
      if let json {
        try AtomicFile.write(Array(JSONEncoder.stagewise(pretty: true).encode(result)), to: json)
      }
      if let out { try AtomicFile.write(report + "\n", to: out) }
    }
  }
}
