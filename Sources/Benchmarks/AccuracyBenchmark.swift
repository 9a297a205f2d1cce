import Datasets
import Foundation
import Learning
import Linalg
import Runtime
import Telemetry

/// `stagewise bench accuracy`: each method at each stage count, same seed, data and epochs,
/// in the one-process trainer (the daemon computes the same weights: a test checks it).
/// Model A's hidden layers are split over K stages; K = 8 uses a deeper A of 8 layers.
public struct AccuracyBenchmark {
  public struct Row: Codable, Sendable {
    public var method: String
    public var stages: Int
    public var epochs: Int
    public var accuracy: Double
    /// Test accuracy of each stage's head, stage 0 first (stages without a head left out).
    public var byDepth: [Double]
    public var depthStages: [Int]
    public var crossEntropyByDepth: [Double]
    public var seconds: Double
  }

  /// A method as the benchmark runs it: a config method, a schedule and a label; `METHOD@RATE`
  /// gives it its own learning rate (a per-method recipe, named in its label).
  public struct Variant: Sendable {
    public var label: String
    public var method: Method
    public var schedule: Schedule
    public var contextMode: ContextMode = .E
    public var learningRate: Float? = nil

    public static func parse(_ text: String) throws -> Variant {
      let parts = text.split(separator: "@", maxSplits: 1).map(String.init)
      guard parts.count == 2 else { return try parseMethod(text) }
      guard let rate = Float(parts[1]), rate > 0 else { throw BenchmarkError("\(text): the learning rate after @ must be a positive number") }
      var variant = try parseMethod(parts[0])
      variant.learningRate = rate
      variant.label += " (lr \(parts[1]))"
      return variant
    }

    static func parseMethod(_ text: String) throws -> Variant {
      switch text {
      case "e2e": return Variant(label: "e2e", method: .e2e, schedule: .lockstep)
      case "greedy": return Variant(label: "greedy", method: .greedy, schedule: .pipelined)
      case "sid": return Variant(label: "sid", method: .sid, schedule: .pipelined)
      case "contsup", "contsup-E": return Variant(label: "contsup-E", method: .contsup, schedule: .pipelined)
      case "contsup-R1": return Variant(label: "contsup-R1", method: .contsup, schedule: .pipelined, contextMode: .R1)
      case "contsup-R1E": return Variant(label: "contsup-R1E", method: .contsup, schedule: .pipelined, contextMode: .R1E)
      case "kernel": return Variant(label: "kernel", method: .kernel, schedule: .pipelined)
      case "kernel-sequential": return Variant(label: "kernel-sequential", method: .kernel, schedule: .sequential)
      case "drtp": return Variant(label: "drtp", method: .drtp, schedule: .pipelined)
      case "dfa": return Variant(label: "dfa", method: .dfa, schedule: .pipelined)
      case "dni": return Variant(label: "dni", method: .dni, schedule: .pipelined)
      case "cdni": return Variant(label: "cdni", method: .cdni, schedule: .pipelined)
      default:
        throw BenchmarkError("unknown method \(text): use e2e, greedy, sid, contsup-E, contsup-R1, contsup-R1E, kernel, kernel-sequential, drtp, dfa, dni, cdni")
      }
    }
  }

  public var variants: [Variant] = []
  public var stageCounts = [2, 4, 8]
  public var epochs = 3
  public var width = 1024
  public var dataPath = FashionMNIST.defaultDirectory
  public var trainLimit: Int?
  public var synthetic = false
  public var seed: UInt64 = 1

  public init() {}

  /// Model A with max(4, K) hidden layers of `width`, split evenly over K stages.
  public func config(_ variant: Variant, stages: Int) -> RunConfig {
    var config = RunConfig()
    config.name = "accuracy-\(variant.label)-k\(stages)"
    config.seed = seed
    config.method = variant.method
    config.schedule = variant.schedule
    config.contsup.mode = variant.contextMode
    config.data.path = dataPath
    config.data.trainLimit = trainLimit
    if synthetic { config.data.source = .synthetic }
    config.training.epochs = epochs
    let layers = max(4, stages)
    config.stages = (0..<stages).map { k in
      let count = layers / stages + (k < layers % stages ? 1 : 0)
      return StageConfig(layers: (0..<count).flatMap { _ in [LayerConfig(.linear, out: width), LayerConfig(.relu)] })
    }
    if variant.method == .sid {  // the SID authors' recipe
      config.optimizer.kind = .adam
      config.optimizer.learningRate = 1e-3
      config.optimizer.weightDecay = 0
    }
    if let rate = variant.learningRate { config.optimizer.learningRate = rate }
    return config
  }

  public func run(log: @escaping (String) -> Void) throws -> [Row] {
    BLAS.setThreads(1)
    var rows: [Row] = []
    var data: (train: Dataset, test: Dataset)?
    for k in stageCounts {
      for variant in variants {
        let config = self.config(variant, stages: k)
        if data == nil { data = try config.loadData() }
        let trainer = try Trainer(config: config, train: data!.train, test: data!.test)
        let start = ContinuousClock.now
        let report = trainer.run().last!
        let seconds = (ContinuousClock.now - start).seconds
        let test = report.test
        let row = Row(
          method: variant.label, stages: k, epochs: epochs, accuracy: test.accuracy, byDepth: test.stageAccuracy,
          depthStages: test.stages ?? Array(test.stageAccuracy.indices), crossEntropyByDepth: test.stageLoss, seconds: seconds)
        rows.append(row)
        log(String(format: "K=%d %@: %.2f %% (by depth %@) in %.0f s", k, variant.label, test.accuracy * 100,
                   test.stageAccuracy.map { String(format: "%.2f", $0 * 100) }.joined(separator: " "), seconds))
      }
    }
    return rows
  }

  /// The Markdown table of `rows`.
  public static func table(_ rows: [Row]) -> String {
    var text = "| K | method | test accuracy | accuracy by depth (stage 0 → K−1) | test CE by depth | wall time |\n|---|---|---|---|---|---|\n"
    for row in rows {
      let depth = row.byDepth.map { String(format: "%.2f", $0 * 100) }.joined(separator: " / ")
      let ce = row.crossEntropyByDepth.map { String(format: "%.3f", $0) }.joined(separator: " / ")
      text += String(format: "| %d | %@ | %.2f %% | %@ | %@ | %.0f s |\n", row.stages, row.method, row.accuracy * 100, depth, ce, row.seconds)
    }
    return text
  }

  /// One panel per K: accuracy by depth, one line per method.
  public static func plot(_ rows: [Row]) -> String {
    let ks = Array(Set(rows.map(\.stages))).sorted()
    let panels = ks.map { k in
      SVGChart.Panel(
        title: "K = \(k)",
        series: rows.filter { $0.stages == k }.map { row in
          SVGChart.Series(name: row.method, points: zip(row.depthStages, row.byDepth).map { (Double($0), $1 * 100) })
        })
    }
    let all = rows.flatMap(\.byDepth).map { $0 * 100 }
    let (low, high) = (((all.min() ?? 0) - 0.5).rounded(.down), ((all.max() ?? 100) + 0.5).rounded(.up))
    return SVGChart.render(panels: panels, xLabel: "stage", yLabel: "test accuracy (%)", yRange: low...max(high, low + 1))
  }
}
