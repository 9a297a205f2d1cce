import Datasets
import Foundation
import Learning
import Linalg
import Runtime
import Telemetry

/// `stagewise bench accuracy`: each method at each stage count and seed, with the same
/// optimizer, schedule, data and epochs unless a method's label names a recipe of its own, in
/// the one-process trainer (the daemon computes the same weights: a test checks it). Model A's
/// hidden layers are split over K stages; K = 8 uses a deeper A of 8 layers. Every cell (K,
/// method, seed) is one run; cells already in `done` are not run again, so a long table fills
/// over several invocations.
public struct AccuracyBenchmark {
  public struct Row: Codable, Sendable {
    public var method: String
    public var stages: Int
    public var epochs: Int
    /// The run's seed (weights and batch order); nil in tables from before seeds.
    public var seed: UInt64?
    /// The model (`a`, `c`; nil: a), model A's width and the training samples used, so cells of
    /// another setup are not mixed in.
    public var model: String?
    public var width: Int?
    public var trainLimit: Int?
    public var synthetic: Bool?
    /// The run's model hash (layers, split, seed, method and its settings, optimizer kind,
    /// data): a cell is only taken as done when it matches. Nil in rows from before.
    public var modelHash: String?
    public var accuracy: Double
    /// Test accuracy of each stage's head, stage 0 first (stages without a head left out).
    public var byDepth: [Double]
    public var depthStages: [Int]
    public var crossEntropyByDepth: [Double]
    public var seconds: Double
  }

  /// A method as the benchmark runs it: a config method, a schedule and a label. A recipe of
  /// its own is named in the label: `METHOD@RATE` (its own learning rate), `METHOD@adam` or
  /// `METHOD@adam:RATE` (Adam, by default at 1e-3, without weight decay — SID's authors' recipe).
  public struct Variant: Sendable {
    public var label: String
    public var method: Method
    public var schedule: Schedule
    public var contextMode: ContextMode = .E
    public var learningRate: Float? = nil
    public var adam = false
    /// DNI's hidden stages also train a head of their own (`dni.auxiliaryLoss`): `cdni+aux`.
    public var auxiliaryLoss = false

    public static func parse(_ text: String) throws -> Variant {
      let parts = text.split(separator: "@", maxSplits: 1).map(String.init)
      guard parts.count == 2 else { return try parseMethod(text) }
      var variant = try parseMethod(parts[0])
      var rate = parts[1]
      if rate == "adam" || rate.hasPrefix("adam:") {
        variant.adam = true
        rate = rate == "adam" ? "0.001" : String(rate.dropFirst(5))
      }
      guard let value = Float(rate), value > 0 else {
        throw BenchmarkError(
          "\(text): after @ comes a learning rate (a positive number), adam, or adam:RATE")
      }
      variant.learningRate = value
      variant.label += variant.adam ? " (adam \(rate))" : " (lr \(rate))"
      return variant
    }

    static func parseMethod(_ text: String) throws -> Variant {
      switch text {
      case "e2e": return Variant(label: "e2e", method: .e2e, schedule: .lockstep)
      case "greedy": return Variant(label: "greedy", method: .greedy, schedule: .pipelined)
      case "sid": return Variant(label: "sid", method: .sid, schedule: .pipelined)
      case "contsup", "contsup-E":
        return Variant(label: "contsup-E", method: .contsup, schedule: .pipelined)
      case "contsup-R1":
        return Variant(
          label: "contsup-R1", method: .contsup, schedule: .pipelined, contextMode: .R1)
      case "contsup-R1E":
        return Variant(
          label: "contsup-R1E", method: .contsup, schedule: .pipelined, contextMode: .R1E)
      case "kernel": return Variant(label: "kernel", method: .kernel, schedule: .pipelined)
      case "kernel-sequential":
        return Variant(label: "kernel-sequential", method: .kernel, schedule: .sequential)
      case "drtp": return Variant(label: "drtp", method: .drtp, schedule: .pipelined)
      case "dfa": return Variant(label: "dfa", method: .dfa, schedule: .pipelined)
      case "dni": return Variant(label: "dni", method: .dni, schedule: .pipelined)
      case "cdni": return Variant(label: "cdni", method: .cdni, schedule: .pipelined)
      case "dni+aux", "cdni+aux":
        var variant = try parseMethod(String(text.dropLast(4)))
        (variant.label, variant.auxiliaryLoss) = (text, true)
        return variant
      default:
        throw BenchmarkError(
          "unknown method \(text): use e2e, greedy, sid, contsup-E, contsup-R1, contsup-R1E, "
            + "kernel, kernel-sequential, drtp, dfa, dni, cdni, dni+aux, cdni+aux"
        )
      }
    }
  }

  /// Model A (an MLP of `width`, built here) or model C (the residual CNN of
  /// `configDirectory/resnet-c-kK.yaml`, its recipe and augmentation as that file says).
  public enum Model: String, Sendable, CaseIterable { case a, c }

  public var variants: [Variant] = []
  public var model = Model.a
  public var configDirectory = "config"
  public var stageCounts = [2, 4, 8]
  public var epochs = 3
  public var width = 1024
  public var dataPath = FashionMNIST.defaultDirectory
  public var trainLimit: Int?
  public var synthetic = false
  public var seeds: [UInt64] = [1]

  public init() {}

  /// Model A with max(4, K) hidden layers of `width`, split evenly over K stages; or model C
  /// as its file for K says. The variant's method, schedule and recipe, and the benchmark's
  /// seed, epochs and data, replace the file's.
  public func config(_ variant: Variant, stages: Int, seed: UInt64 = 1) throws -> RunConfig {
    var config = RunConfig()
    if model == .c {
      let path = "\(configDirectory)/resnet-c-k\(stages).yaml"
      do {
        config = try RunConfig.load(path: path)
      } catch {
        throw BenchmarkError(
          "model C at K = \(stages): \(error) (model C ships for K = 2, 4, 8, 16; "
            + "scripts/model-c.py writes the files; --configs names their folder)"
        )
      }
    }
    config.name = "accuracy-\(variant.label)-k\(stages)"
    config.seed = seed
    config.method = variant.method
    config.schedule = variant.schedule
    config.contsup.mode = variant.contextMode
    config.dni.auxiliaryLoss = variant.auxiliaryLoss
    config.data.path = dataPath
    config.data.trainLimit = trainLimit
    if synthetic { config.data.source = .synthetic }
    config.training.epochs = epochs
    if model == .a {
      let layers = max(4, stages)
      config.stages = (0..<stages).map { k in
        let count = layers / stages + (k < layers % stages ? 1 : 0)
        return StageConfig(
          layers: (0..<count).flatMap { _ in [LayerConfig(.linear, out: width), LayerConfig(.relu)]
          })
      }
    }
    if variant.adam {
      config.optimizer.kind = .adam
      config.optimizer.weightDecay = 0
    }
    if let rate = variant.learningRate { config.optimizer.learningRate = rate }
    return config
  }

  /// Whether `row` is the run of `config` under `label` (its recipe) for this many epochs:
  /// rows from before model hashes never are.
  func isCell(_ row: Row, label: String, config: RunConfig) -> Bool {
    // the hash holds the split
    row.method == label && row.epochs == epochs && row.modelHash == config.modelHash
  }

  /// Runs every cell not in `done`; after each, `save` gets every row so far (`done`'s first).
  public func run(
    done: [Row] = [], save: ([Row]) throws -> Void = { _ in }, log: @escaping (String) -> Void
  ) throws -> [Row] {
    BLAS.setThreads(1)
    var rows = done
    var data: (train: Dataset, test: Dataset)?
    var skipped = 0
    for k in stageCounts {
      for variant in variants {
        for seed in seeds {
          let config = try self.config(variant, stages: k, seed: seed)
          if rows.contains(where: { isCell($0, label: variant.label, config: config) }) {
            skipped += 1
            continue
          }
          if data == nil { data = try config.loadData() }
          let trainer = try Trainer(config: config, train: data!.train, test: data!.test)
          let start = ContinuousClock.now
          let report = trainer.run().last!
          let seconds = (ContinuousClock.now - start).seconds
          let test = report.test
          rows.append(
            Row(
              method: variant.label, stages: k, epochs: epochs, seed: seed, model: model.rawValue,
              width: model == .a ? width : nil, trainLimit: trainLimit, synthetic: synthetic,
              modelHash: config.modelHash,
              accuracy: test.accuracy, byDepth: test.stageAccuracy,
              depthStages: test.stages ?? Array(test.stageAccuracy.indices),
              crossEntropyByDepth: test.stageLoss, seconds: seconds))
          try save(rows)
          log(
            String(
              format: "K=%d %@ seed %llu: %.2f %% (by depth %@) in %.0f s", k, variant.label, seed,
              test.accuracy * 100,
              test.stageAccuracy.map { String(format: "%.2f", $0 * 100) }.joined(separator: " "),
              seconds))
        }
      }
    }
    if skipped > 0 { log("\(skipped) cells were in accuracy.json already: not run again") }
    return rows
  }

  /// One table line: a method at one K over its seeds, in one setup (model, epochs, data).
  public struct Cell: Sendable {
    public var method: String
    public var setup: String
    public var stages: Int
    public var seeds: [UInt64]
    public var mean: Double
    /// Sample standard deviation over the seeds (nil for one seed).
    public var deviation: Double?
    public var byDepth: [Double]
    public var seconds: Double
  }

  /// What a row was run on, besides its method, K and seed: rows of different setups are
  /// never averaged together.
  static func setup(_ row: Row) -> String {
    let model = (row.model ?? "a") == "a" ? "A\(row.width.map { " (width \($0))" } ?? "")" : "C"
    let data =
      (row.synthetic ?? false) ? ", synthetic" : row.trainLimit.map { ", \($0) samples" } ?? ""
    return "model \(model), \(row.epochs) epochs\(data)\(row.modelHash == nil ? ", older run" : "")"
  }

  /// The rows grouped by (setup, K, method) in the order they first appear: mean and standard
  /// deviation of the test accuracy over seeds, mean accuracy by depth, mean wall time.
  public static func cells(_ rows: [Row]) -> [Cell] {
    var order: [String] = []
    var groups: [String: [Row]] = [:]
    for row in rows {
      let key = "\(setup(row)) \(row.stages) \(row.method)"
      if groups[key] == nil { order.append(key) }
      groups[key, default: []].append(row)
    }
    return order.map { key in
      let group = groups[key]!
      let n = Double(group.count)
      let mean = group.map(\.accuracy).reduce(0, +) / n
      let deviation =
        group.count > 1
        ? (group.map { ($0.accuracy - mean) * ($0.accuracy - mean) }.reduce(0, +) / (n - 1))
          .squareRoot() : nil
      let depth = group[0].byDepth.indices.map { i in
        group.map { $0.byDepth.indices.contains(i) ? $0.byDepth[i] : 0 }.reduce(0, +) / n
      }
      return Cell(
        method: group[0].method, setup: setup(group[0]), stages: group[0].stages,
        seeds: group.map { $0.seed ?? 1 }, mean: mean, deviation: deviation,
        byDepth: depth, seconds: group.map(\.seconds).reduce(0, +) / n)
    }
  }

  /// The Markdown table of `rows`: per K and method, the test accuracy's mean ± standard
  /// deviation over the seeds, the mean accuracy by depth and the mean wall time per run.
  public static func table(_ rows: [Row]) -> String {
    var text =
      "| setup | K | method | test accuracy (mean ± sd) | seeds | accuracy by depth (stage 0 → "
      + "K−1, mean) | wall time per run |\n|---|---|---|---|---|---|---|\n"
    for cell in cells(rows) {
      let depth = cell.byDepth.map { String(format: "%.2f", $0 * 100) }.joined(separator: " / ")
      let spread = cell.deviation.map { String(format: " ± %.2f", $0 * 100) } ?? ""
      let seeds = cell.seeds.map(String.init).joined(separator: ", ")
      text += String(
        format: "| %@ | %d | %@ | %.2f%@ %% | %@ | %@ | %.0f s |\n", cell.setup, cell.stages,
        cell.method, cell.mean * 100, spread, seeds, depth, cell.seconds)
    }
    return text
  }

  /// Test accuracy (mean over seeds) against K, one line per method.
  public static func plotByStages(_ rows: [Row]) -> String {
    let cells = cells(rows)
    let several = Set(cells.map(\.setup)).count > 1
    func name(_ cell: Cell) -> String { several ? "\(cell.method), \(cell.setup)" : cell.method }
    var names: [String] = []
    for cell in cells where !names.contains(name(cell)) { names.append(name(cell)) }
    let series = names.map { label in
      SVGChart.Series(
        name: label,
        points: cells.filter { name($0) == label }.map { (Double($0.stages), $0.mean * 100) })
    }
    let all = cells.map { $0.mean * 100 }
    let (low, high) = (
      ((all.min() ?? 0) - 0.5).rounded(.down), ((all.max() ?? 100) + 0.5).rounded(.up)
    )
    return SVGChart.render(
      panels: [SVGChart.Panel(title: "test accuracy against K", series: series)],
      xLabel: "stages K", yLabel: "test accuracy (%)", yRange: low...max(high, low + 1))
  }

  /// One panel per K: accuracy by depth (mean over seeds), one line per method.
  public static func plot(_ rows: [Row]) -> String {
    let ks = Array(Set(rows.map(\.stages))).sorted()
    let depthStages = Dictionary(
      rows.map { ("\(setup($0)) \($0.stages) \($0.method)", $0.depthStages) }
    ) { a, _ in a }
    let cells = cells(rows)
    let several = Set(cells.map(\.setup)).count > 1
    let panels = ks.map { k in
      SVGChart.Panel(
        title: "K = \(k)",
        series: cells.filter { $0.stages == k }.map { cell in
          SVGChart.Series(
            name: several ? "\(cell.method), \(cell.setup)" : cell.method,
            points: zip(depthStages["\(cell.setup) \(k) \(cell.method)"]!, cell.byDepth).map {
              (Double($0), $1 * 100)
            })
        })
    }
    let all = cells.flatMap(\.byDepth).map { $0 * 100 }
    let (low, high) = (
      ((all.min() ?? 0) - 0.5).rounded(.down), ((all.max() ?? 100) + 0.5).rounded(.up)
    )
    return SVGChart.render(
      panels: panels, xLabel: "stage", yLabel: "test accuracy (%)", yRange: low...max(high, low + 1)
    )
  }
}
