import ArgumentParser
import Benchmarks
import Datasets
import Foundation
import Learning
import Linalg
import Memory
import NN
import Runtime
import Telemetry

extension Bench {
  struct Pipeline: ParsableCommand {
    static let configuration = CommandConfiguration(
      abstract:
        "Update-locking elimination, side by side: one-process e2e and greedy, e2e across "
        + "processes, GPipe, lockstep, pipelined, replay, pipelined with CURVE, DFA, DNI and SID."
    )

    @Option(help: "Stage counts to measure, comma-separated.") var stages = "2"
    @Option(help: "Modes, comma-separated (default: all).") var modes: String?
    @Option(help: "Hidden layers of width --width, split evenly over the stages.") var layers = 4
    @Option(help: "Hidden width.") var width = 1024
    @Option(help: "Batch size.") var batchSize = 128
    @Option(help: "Training batches per measurement.") var batches = 200
    @Option(help: "OpenBLAS threads per process.") var threads = 1
    @Option(help: "GPipe micro-batches per batch.") var microBatches = 4
    @Option(help: "Batches in flight for pipelined and replay (0: 2 × stages).") var maxInFlight = 0
    @Option(help: "Fashion-MNIST folder.") var data = FashionMNIST.defaultDirectory
    @Flag(help: "Use generated data (for a quick check of the instrument).") var synthetic = false
    @Option(
      help:
        ArgumentHelp(
          "Straggler factors, comma-separated (e.g. 1.5,2): the daemon modes again with stage "
            + "--slow-stage slowed.")
    ) var straggler: String?
    @Option(help: "The stage --straggler slows and --replicas replicates.") var slowStage = 0
    @Option(
      help:
        ArgumentHelp(
          "Also run pipelined-replicas: pipelined with stage --slow-stage on this many workers."))
    var replicas: Int?
    @Option(
      help:
        ArgumentHelp(
          "Also measure time to this test accuracy (e.g. 0.88): one-process e2e vs. pipelined, "
            + "full "
            + "data.")
    ) var targetAccuracy: Double?
    @Option(
      help:
        ArgumentHelp(
          "BLAS threads of the one-process baselines (default: the cores the daemon's workers use, "
            + "min(K × threads, cores)).")
    ) var oneProcessThreads: Int?
    @Flag(help: "Leave out the PyTorch column.") var noPytorch = false
    @Option(
      help:
        ArgumentHelp(
          "Python with PyTorch (default: .venv-bench/bin/python from scripts/baseline/setup.sh, "
            + "else "
            + "python3).")
    ) var python: String?
    @Option(help: "Most epochs of the time-to-accuracy race.") var maxEpochs = 10
    @Option(help: "Folder for the runs, report.md, rows.json, rows.csv and the timelines.")
    var out = "runs/bench-pipeline"
    @Flag(
      help:
        ArgumentHelp(
          "Rewrite report.md, rows.csv and the plots from rows.json (and time-to-accuracy.json) in "
            + "--out, without measuring.")
    ) var replot = false

    func run() throws {
      if replot {
        var rows = try JSONDecoder.stagewise.decode(
          [PipelineBenchmark.Row].self,
          from: Data(contentsOf: URL(fileURLWithPath: "\(out)/rows.json")))
        for i in rows.indices {
          rows[i].bubble = PipelineBenchmark.bubble(rows[i].busy)
          rows[i].imbalance = PipelineBenchmark.imbalance(rows[i].busy)
          let name = PipelineBenchmark.runName(
            rows[i].mode, stages: rows[i].stages, slowdown: rows[i].slowdown)
          if let data = FileManager.default.contents(atPath: "\(out)/\(name)/trace.json"),
            let trace = try? JSONDecoder.stagewise.decode(ChromeTrace.self, from: data)
          {
            let waits = PipelineBenchmark.waitStatistics(trace, stages: rows[i].stages)
            (rows[i].waitFraction, rows[i].sendBlockedFraction) = (waits.wait, waits.blocked)
            (rows[i].waitP50Milliseconds, rows[i].waitP99Milliseconds) = (waits.p50, waits.p99)
          }
        }
        let race = try? JSONDecoder.stagewise.decode(
          [PipelineBenchmark.TimeToAccuracy].self,
          from: Data(contentsOf: URL(fileURLWithPath: "\(out)/time-to-accuracy.json")))
        try write(rows, race: race, target: targetAccuracy ?? 0.88, pytorchSkipped: nil)
        return
      }
      Allocator.keepFreedMemory()
      let counts = stages.split(separator: ",").compactMap {
        Int($0.trimmingCharacters(in: .whitespaces))
      }
      guard !counts.isEmpty else { throw ValidationError("--stages needs numbers, e.g. 1,2,4") }
      var bench = PipelineBenchmark(workDirectory: out)
      if let modes {
        bench.modes = try modes.split(separator: ",").map { name in
          guard let mode = PipelineBenchmark.Mode(rawValue: String(name)) else {
            throw ValidationError(
              "--modes: \(name) is not one of "
                + "\(PipelineBenchmark.Mode.allCases.map(\.rawValue).joined(separator: ", "))"
            )
          }
          return mode
        }
      }
      (bench.stageCounts, bench.hiddenLayers, bench.width, bench.batchSize) = (
        counts, layers, width, batchSize
      )
      (bench.batches, bench.threads, bench.maxInFlight, bench.dataPath) = (
        batches, threads, maxInFlight, data
      )
      (bench.microBatches, bench.synthetic, bench.oneProcessThreads) = (
        microBatches, synthetic, oneProcessThreads
      )
      bench.slowStage = slowStage
      if let replicas {
        guard (2...16).contains(replicas) else { throw ValidationError("--replicas: 2 to 16") }
        bench.replicas = replicas
        if !bench.modes.contains(.replicated) { bench.modes.append(.replicated) }
      }
      bench.pytorch = noPytorch ? nil : PyTorchBaseline(python: python)
      bench.stragglerFactors =
        straggler.map { $0.split(separator: ",").compactMap { Double($0) } } ?? []
      try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
      Console.kernels()
      Console.print(
        "model A \(layers) × \(width), batch \(batchSize), \(batches) batches, \(threads) BLAS "
          + "thread(s) per worker, GPipe M = \(microBatches)"
      )
      let rows = try bench.run { Console.status($0) }
      let race = try targetAccuracy.map { target in
        try bench.timeToAccuracy(
          target: target, maxEpochs: maxEpochs,
          oneProcessThreads: oneProcessThreads ?? bench.daemonCores(counts[0]), stages: counts[0]
        ) { Console.status($0) }
      }
      try write(
        rows, race: race, target: targetAccuracy ?? 0,
        pytorchSkipped: noPytorch ? "not asked for (--no-pytorch)" : bench.pytorchSkipped)
      Console.print(
        "wrote \(out)/report.md, rows.json, rows.csv, throughput.svg, timeline-*.svg"
          + (targetAccuracy == nil ? "" : ", time-to-accuracy.json, accuracy-over-time.svg")
          + "; traces in \(out)/*/trace.json")
    }

    /// report.md, rows.json, rows.csv, throughput.svg, and the race's table, JSON and plot.
    func write(
      _ rows: [PipelineBenchmark.Row], race: [PipelineBenchmark.TimeToAccuracy]?, target: Double,
      pytorchSkipped: String?
    ) throws {
      var report =
        KernelReport.current.line + "\n\n"
        + PipelineBenchmark.report(rows, microBatches: microBatches)
      if let pytorchSkipped { report += "\nPyTorch column skipped: \(pytorchSkipped)\n" }
      if let race {
        report += String(
          format:
            "\nTime to %.0f %% test accuracy (full data, evaluations included):\n\n| mode | BLAS "
            + "threads per process | time | epochs | accuracy |\n|---|---|---|---|---|\n",
          target * 100)
        for r in race {
          report += String(
            format: "| %@ | %d | %@ | %d | %.2f %% |\n", r.mode, r.threads,
            r.seconds.map { String(format: "%.1f s", $0) } ?? "not reached", r.epochs,
            r.finalAccuracy * 100)
        }
        try AtomicFile.write(
          Array(JSONEncoder.stagewise(pretty: true).encode(race)),
          to: "\(out)/time-to-accuracy.json")
        try AtomicFile.write(
          PipelineBenchmark.accuracyOverTimePlot(race), to: "\(out)/accuracy-over-time.svg")
      }
      try AtomicFile.write(report, to: "\(out)/report.md")
      try AtomicFile.write(PipelineBenchmark.csv(rows), to: "\(out)/rows.csv")
      try AtomicFile.write(PipelineBenchmark.throughputPlot(rows), to: "\(out)/throughput.svg")
      try AtomicFile.write(
        Array(JSONEncoder.stagewise(pretty: true).encode(rows)), to: "\(out)/rows.json")
      Console.print(report)
    }
  }
}
