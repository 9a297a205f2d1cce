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
      abstract: "Each method at each stage count on Fashion-MNIST: a table and a plot of accuracy by depth.")

    @Option(help: "Methods, comma-separated (e2e, greedy, sid, contsup-E, contsup-R1, contsup-R1E, kernel, kernel-sequential, drtp, dfa, dni, cdni; METHOD@RATE for a learning rate of its own).")
    var methods = "e2e,greedy,sid,contsup-E,kernel"
    @Option(help: "Stage counts, comma-separated.") var stages = "2,4,8"
    @Option(help: "Epochs per run.") var epochs = 3
    @Option(help: "Hidden width of model A.") var width = 1024
    @Option(help: "Use only the first N training samples.") var trainLimit: Int?
    @Option(help: "Fashion-MNIST folder.") var data = FashionMNIST.defaultDirectory
    @Flag(help: "Use generated data (for a quick check of the instrument).") var synthetic = false
    @Option(help: "Folder for accuracy.md, accuracy.json and accuracy-by-depth.svg.") var out = "runs/bench-accuracy"

    @Flag(help: "Redraw accuracy.md and the plot from the accuracy.json in --out, without training.") var replot = false

    func run() throws {
      if replot {
        let rows = try JSONDecoder.stagewise.decode([AccuracyBenchmark.Row].self, from: Data(contentsOf: URL(fileURLWithPath: "\(out)/accuracy.json")))
        try AtomicFile.write(AccuracyBenchmark.table(rows), to: "\(out)/accuracy.md")
        try AtomicFile.write(AccuracyBenchmark.plot(rows), to: "\(out)/accuracy-by-depth.svg")
        Console.print(AccuracyBenchmark.table(rows))
        return
      }
      Allocator.keepFreedMemory()
      var bench = AccuracyBenchmark()
      bench.variants = try methods.split(separator: ",").map { try AccuracyBenchmark.Variant.parse(String($0)) }
      bench.stageCounts = stages.split(separator: ",").compactMap { Int($0) }
      (bench.epochs, bench.width, bench.trainLimit, bench.dataPath) = (epochs, width, trainLimit, data)
      bench.synthetic = synthetic
      Console.print("OpenBLAS core \(BLAS.coreName); model A (width \(width)), \(epochs) epochs, seed \(bench.seed)")
      let rows = try bench.run { Console.status($0) }
      try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
      let table = AccuracyBenchmark.table(rows)
      try AtomicFile.write(table, to: "\(out)/accuracy.md")
      try AtomicFile.write(AccuracyBenchmark.plot(rows), to: "\(out)/accuracy-by-depth.svg")
      try AtomicFile.write(Array(JSONEncoder.stagewise(pretty: true).encode(rows)), to: "\(out)/accuracy.json")
      Console.print(table)
      Console.print("wrote \(out)/accuracy.md, accuracy.json, accuracy-by-depth.svg")
    }
  }
}
