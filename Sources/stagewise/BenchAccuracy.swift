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
  struct Accuracy: ParsableCommand {
    static let configuration = CommandConfiguration(
      abstract:
        "Each method at each stage count and seed on Fashion-MNIST, with the same optimizer and "
        + "schedule: a table (mean ± sd over seeds) and plots of accuracy by depth and against "
        + "K. Cells already in --out's accuracy.json are not run again."
    )

    @Option(
      help:
        ArgumentHelp(
          "Methods, comma-separated (e2e, greedy, sid, contsup-E, contsup-R1, contsup-R1E, kernel, "
            + "kernel-sequential, drtp, dfa, dni, cdni, dni+aux, cdni+aux (hidden stages also "
            + "train "
            + "a head of their own); a recipe of its own, named in the table: METHOD@RATE, "
            + "METHOD@adam, METHOD@adam:RATE).")
    )
    var methods = "e2e,greedy,sid,contsup-E,kernel"
    @Option(help: "Stage counts, comma-separated.") var stages = "2,4,8"
    @Option(help: "Seeds, comma-separated: one run per seed in every cell.") var seeds = "1"
    @Option(help: "Epochs per run.") var epochs = 3
    @Option(
      help:
        "a (the MLP of --width, built in) or c (the residual CNN of --configs/resnet-c-kK.yaml).")
    var model = "a"
    @Option(help: "Where model C's files are.") var configs = "config"
    @Option(help: "Hidden width of model A.") var width = 1024
    @Option(help: "Use only the first N training samples.") var trainLimit: Int?
    @Option(help: "Fashion-MNIST folder.") var data = FashionMNIST.defaultDirectory
    @Flag(help: "Use generated data (for a quick check of the instrument).") var synthetic = false
    @Option(
      help: "Folder for accuracy.md, accuracy.json, accuracy-by-depth.svg and accuracy-by-k.svg.")
    var out = "runs/bench-accuracy"

    @Flag(
      help: "Redraw accuracy.md and the plot from the accuracy.json in --out, without training.")
    var replot = false

    func run() throws {
      let json = "\(out)/accuracy.json"
      let done =
        FileManager.default.fileExists(atPath: json)
        ? try JSONDecoder.stagewise.decode(
          [AccuracyBenchmark.Row].self, from: Data(contentsOf: URL(fileURLWithPath: json))) : []
      if replot {
        try write(done)
        return
      }
      Allocator.keepFreedMemory()
      var bench = AccuracyBenchmark()
      bench.variants = try methods.split(separator: ",").map {
        try AccuracyBenchmark.Variant.parse(String($0))
      }
      bench.stageCounts = stages.split(separator: ",").compactMap { Int($0) }
      bench.seeds = try seeds.split(separator: ",").map {
        guard let seed = UInt64($0) else {
          throw ValidationError("--seeds: \($0) is not a seed (a whole number ≥ 0)")
        }
        return seed
      }
      (bench.epochs, bench.width, bench.trainLimit, bench.dataPath) = (
        epochs, width, trainLimit, data
      )
      bench.synthetic = synthetic
      guard let model = AccuracyBenchmark.Model(rawValue: model.lowercased()) else {
        throw ValidationError("--model: use a or c")
      }
      (bench.model, bench.configDirectory) = (model, configs)
      Console.print(
        "OpenBLAS core \(BLAS.coreName); "
          + (model == .a ? "model A (width \(width))" : "model C (\(configs)/resnet-c-kK.yaml)")
          + ", \(epochs) epochs, seeds \(seeds)")
      try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
      let save = { (rows: [AccuracyBenchmark.Row]) in
        try AtomicFile.write(Array(JSONEncoder.stagewise(pretty: true).encode(rows)), to: json)
      }
      let rows = try bench.run(done: done, save: save, log: { Console.status($0) })
      try write(rows)
    }

    func write(_ rows: [AccuracyBenchmark.Row]) throws {
      let table = AccuracyBenchmark.table(rows)
      try AtomicFile.write(table, to: "\(out)/accuracy.md")
      try AtomicFile.write(AccuracyBenchmark.plot(rows), to: "\(out)/accuracy-by-depth.svg")
      try AtomicFile.write(AccuracyBenchmark.plotByStages(rows), to: "\(out)/accuracy-by-k.svg")
      Console.print(table)
      Console.print(
        "wrote \(out)/accuracy.md, accuracy.json, accuracy-by-depth.svg, accuracy-by-k.svg")
    }
  }
}
