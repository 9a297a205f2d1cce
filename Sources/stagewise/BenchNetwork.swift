import ArgumentParser
import Benchmarks
import Datasets
import Foundation
import Learning
import Linalg
import NN

extension Bench {
  struct Network: ParsableCommand {
    static let configuration = CommandConfiguration(
      abstract:
        "Update locking across a real network: the scheduler and every stage on hosts of their own "
        + "(network namespaces), links shaped in rate and delay, every mode side by side (root)."
    )

    @Option(
      help:
        ArgumentHelp(
          "Link profiles, comma-separated: loopback or RATE+DELAY (100mbit+5ms, 1gbit+1ms, "
            + "unshaped+2ms).")
    )
    var profiles = LinkProfile.defaults.joined(separator: ",")
    @Option(help: "Modes, comma-separated.") var modes =
      "pipelined,sid,dfa,dni,e2e-distributed,gpipe"
    @Option(help: "Wire formats of the pipelined mode, comma-separated (f32, f16, bf16, int8).")
    var wireFormats = "f32"
    @Option(help: "Stages (one host each, the scheduler on another).") var stages = 4
    @Option(help: "Workers per stage in the pipelined-replicas mode, each on a host of its own.")
    var replicas = 2
    @Option(help: "Hidden width of model A (4 hidden layers split over the stages).") var width =
      1024
    @Option(help: "Batch size.") var batchSize = 128
    @Option(help: "Training batches per run.") var batches = 100
    @Option(help: "GPipe micro-batches per batch.") var microBatches = 4
    @Option(help: "Fashion-MNIST folder.") var data = FashionMNIST.defaultDirectory
    @Flag(help: "Use generated data (a quick check of the instrument).") var synthetic = false
    @Option(
      help:
        ArgumentHelp(
          "Race to this test accuracy instead (e.g. 0.85): all the data, up to --epochs epochs, "
            + "cosine schedule; time from start to the first epoch that reaches it.")
    )
    var targetAccuracy: Double?
    @Option(help: "Most epochs of the race.") var epochs = 5
    @Option(help: "Folder for the runs, report.md, rows.json and the plots.") var out =
      "runs/bench-network"

    func run() throws {
      let links = try profiles.split(separator: ",").map { try LinkProfile(parsing: String($0)) }
      var pipeline = PipelineBenchmark(workDirectory: out)
      (pipeline.hiddenLayers, pipeline.width, pipeline.batchSize, pipeline.batches) = (
        4, width, batchSize, batches
      )
      (pipeline.microBatches, pipeline.dataPath, pipeline.synthetic) = (
        microBatches, data, synthetic
      )
      var bench = NetworkBenchmark(profiles: links, pipeline: pipeline)
      (bench.stages, bench.targetAccuracy, bench.epochs) = (stages, targetAccuracy, epochs)
      guard (2...16).contains(replicas) else { throw ValidationError("--replicas: 2 to 16") }
      bench.replicas = replicas
      bench.modes = try modes.split(separator: ",").map { name in
        guard let mode = PipelineBenchmark.Mode(rawValue: String(name)),
          ![.oneProcessE2E, .oneProcessGreedy, .pipelinedCurve].contains(mode)
        else {
          throw ValidationError(
            "--modes: \(name) is not one of pipelined, pipelined-replicas, sid, dfa, dni, "
              + "e2e-distributed, gpipe, lockstep, replay"
          )
        }
        return mode
      }
      bench.wireFormats = try wireFormats.split(separator: ",").map { name in
        guard let format = ValueFormat(rawValue: String(name)) else {
          throw ValidationError("--wire-formats: \(name) is not one of f32, f16, bf16, int8")
        }
        return format
      }
      try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
      Console.kernels()
      Console.print(
        "model A 4 × \(width), batch \(batchSize), \(batches) batches, K = \(stages), GPipe M = "
          + "\(microBatches)"
      )
      let rows = try bench.run { Console.status($0) }
      let report = KernelReport.current.line + "\n\n" + NetworkBenchmark.report(rows)
      try AtomicFile.write(report, to: "\(out)/report.md")
      try AtomicFile.write(
        Array(JSONEncoder.stagewise(pretty: true).encode(rows)), to: "\(out)/rows.json")
      try AtomicFile.write(
        NetworkBenchmark.plot(rows, profiles: links, against: "delay"),
        to: "\(out)/throughput-vs-delay.svg")
      try AtomicFile.write(
        NetworkBenchmark.plot(rows, profiles: links, against: "bandwidth"),
        to: "\(out)/throughput-vs-bandwidth.svg")
      Console.print(report)
      Console.print(
        "wrote \(out)/report.md, rows.json, throughput-vs-delay.svg, throughput-vs-bandwidth.svg; "
          + "each run's merged trace in \(out)/RUN/run/trace.json"
      )
    }
  }
}
