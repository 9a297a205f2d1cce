import Datasets
import Foundation
import Hardware
import Learning
import Linalg
import NN

/// `stagewise bench kernels`: how close training comes to the machine's limits, measured side
/// by side in one run — the CPU's FMA peak, raw sgemm on model A's shapes, a whole training
/// step of model A (MLP) and of model B (CNN), on 1 core and on all cores — and, where PyTorch
/// can be imported, PyTorch on the same models and recipe as a column.
public struct KernelBenchmark {
  public struct ModelResult: Sendable, Codable {
    public var model: String
    public var batchSize: Int
    /// FLOPs of one training step (forward, weight gradients, input gradients but the first).
    public var flopsPerStep: Double
    /// By thread count ("1", "2").
    public var samplesPerSecond: [String: Double]
    public var stepGFLOPS: [String: Double]
    public var pytorchSamplesPerSecond: [String: Double]
  }

  public struct Result: Sendable, Codable {
    public var kernels: KernelReport
    public var fmaPeakGFLOPS: [String: Double]
    /// Raw sgemm on the GEMMs of one model A step, by thread count, on operands laid out as
    /// the step's are (per layer: x, W, y, dy, dW, dx): the like-for-like yardstick.
    public var rawGemmGFLOPS: [String: Double]
    /// The same GEMMs on one small reused set of buffers (cache-hot: flatters sgemm).
    public var rawGemmCacheHotGFLOPS: [String: Double]? = nil
    public var models: [ModelResult]
    /// Why there is no PyTorch column, when there is none.
    public var pytorchSkipped: String?
  }

  public var rounds = 5
  public var stepsPerRound = 10
  public var threadCounts = Array(Set([1, CPU.cores])).sorted()
  /// Model A's batch size; model B runs at half of it (64 by default, as config/cnn-e2e.yaml).
  public var batchSize = 128
  public var pytorch: PyTorchBaseline? = PyTorchBaseline()

  public init() {}

  /// Model A trained end to end: 784 → 4 × [Linear 1024, ReLU] → 10.
  static func modelA(batchSize: Int) throws -> Trainer {
    var config = RunConfig()
    config.method = .e2e
    config.stages = (0..<4).map { _ in
      StageConfig(layers: [LayerConfig(.linear, out: 1024), LayerConfig(.relu)])
    }
    config.training.batchSize = batchSize
    return try trainer(config)
  }

  /// Model B (config/cnn-e2e.yaml) trained end to end.
  static func modelB(batchSize: Int) throws -> Trainer {
    var config = RunConfig()
    config.method = .e2e
    config.optimizer.learningRate = 0.1
    config.optimizer.nesterov = true
    func conv(_ filters: Int) -> LayerConfig {
      var layer = LayerConfig(.conv, out: filters)
      layer.kernel = 3
      return layer
    }
    var pool = LayerConfig(.maxpool)
    pool.size = 2
    config.stages = [
      StageConfig(layers: [conv(32), LayerConfig(.relu), pool]),
      StageConfig(layers: [conv(64), LayerConfig(.relu)]),
      StageConfig(layers: [conv(64), LayerConfig(.relu), pool]),
      StageConfig(layers: [conv(128), LayerConfig(.relu)]),
    ]
    config.training.batchSize = batchSize
    return try trainer(config)
  }

  static func trainer(_ config: RunConfig) throws -> Trainer {
    let data = SyntheticDataset.make(count: config.training.batchSize, side: 28, seed: 1)
    return try Trainer(config: config, train: data, test: data.prefix(10))
  }

  /// FLOPs of one e2e training step: forward, backward to the weights (as many again) and to
  /// the inputs (as many again, but not into the first layer's input).
  static func flopsPerStep(_ trainer: Trainer) -> Double {
    let stages = trainer.stages
    let forward =
      stages.reduce(0) { $0 + $1.body.forwardFLOPsPerSample }
      + (stages.last?.head?.forwardFLOPsPerSample ?? 0)
    let first = stages.first?.body.layers.first?.forwardFLOPsPerSample ?? 0
    return Double((3 * forward - first) * trainer.config.training.batchSize)
  }

  /// Every Linear layer an e2e step of an MLP runs, in order (bodies, then the classifier).
  static func linears(_ stages: [Stage]) -> [Linear] {
    let bodies: [any Layer] = stages.flatMap(\.body.layers)
    let classifier: [any Layer] = stages.last?.head?.classifier.layers ?? []
    return (bodies + classifier).compactMap { $0 as? Linear }
  }

  /// The (m, n, k, transA, transB) of every GEMM one e2e training step of an MLP makes.
  static func gemmShapes(_ stages: [Stage], batch: Int) -> [(Int, Int, Int, Transpose, Transpose)] {
    let linears = linears(stages)
    var shapes: [(Int, Int, Int, Transpose, Transpose)] = []
    for l in linears { shapes.append((batch, l.outputs, l.inputs, .none, .transposed)) }  // forward
    for (i, l) in linears.enumerated().reversed() {
      shapes.append((l.outputs, l.inputs, batch, .transposed, .none))  // weight gradient
      if i > 0 { shapes.append((batch, l.inputs, l.outputs, .none, .none)) }  // input gradient
    }
    return shapes
  }

  /// Seconds per call of `body` over one round of `stepsPerRound` calls.
  func round(_ body: () -> Void) -> Double {
    let start = ContinuousClock.now
    for _ in 0..<stepsPerRound { body() }
    return (ContinuousClock.now - start).seconds / Double(stepsPerRound)
  }

  /// Seconds per call of `body`, the median of `rounds` rounds after one warm-up round.
  func seconds(_ body: () -> Void) -> Double {
    _ = round(body)
    return median((0..<rounds).map { _ in round(body) })
  }

  public func run(log: (String) -> Void) throws -> Result {
    let a = try Self.modelA(batchSize: batchSize)
    let b = try Self.modelB(batchSize: max(1, batchSize / 2))
    let batchA = a.train.batch(ArraySlice(0..<a.config.training.batchSize))
    let batchB = b.train.batch(ArraySlice(0..<b.config.training.batchSize))
    let shapes = Self.gemmShapes(a.stages, batch: a.config.training.batchSize)
    let rawFLOPs = shapes.reduce(0.0) { $0 + 2 * Double($1.0 * $1.1 * $1.2) }
    // Like for like: each layer's own x, W, y, dy, dW and dx, used by its three GEMMs as the
    // step uses them (forward y = x·Wᵀ, dW = dyᵀ·x, dx = dy·W).
    let linears = Self.linears(a.stages)
    let batch = a.config.training.batchSize
    var operands = linears.map { l in
      (
        x: [Float](repeating: 0.01, count: batch * l.inputs),
        w: [Float](repeating: 0.01, count: l.outputs * l.inputs),
        y: [Float](repeating: 0, count: batch * l.outputs),
        dy: [Float](repeating: 0.01, count: batch * l.outputs),
        dw: [Float](repeating: 0, count: l.outputs * l.inputs),
        dx: [Float](repeating: 0, count: batch * l.inputs)
      )
    }
    func rawGemm() {
      for (i, l) in linears.enumerated() {
        gemm(
          .none, .transposed, m: batch, n: l.outputs, k: l.inputs, a: operands[i].x,
          aCount: batch * l.inputs,
          b: operands[i].w, bCount: l.outputs * l.inputs, beta: 1, c: &operands[i].y,
          cCount: batch * l.outputs)
      }
      for (i, l) in linears.enumerated().reversed() {
        gemm(
          .transposed, .none, m: l.outputs, n: l.inputs, k: batch, a: operands[i].dy,
          aCount: batch * l.outputs,
          b: operands[i].x, bCount: batch * l.inputs, beta: 1, c: &operands[i].dw,
          cCount: l.outputs * l.inputs)
        if i > 0 {
          gemm(
            .none, .none, m: batch, n: l.inputs, k: l.outputs, a: operands[i].dy,
            aCount: batch * l.outputs,
            b: operands[i].w, bCount: l.outputs * l.inputs, c: &operands[i].dx,
            cCount: batch * l.inputs)
        }
      }
    }
    let largest = shapes.map { max($0.0 * $0.2, $0.2 * $0.1, $0.0 * $0.1) }.max() ?? 1
    var hotA = [Float](repeating: 0.01, count: largest)
    var hotB = [Float](repeating: 0.01, count: largest)
    var hotC = [Float](repeating: 0, count: largest)
    func cacheHotGemm() {
      for (m, n, k, ta, tb) in shapes {
        gemm(
          ta, tb, m: m, n: n, k: k, a: &hotA, aCount: m * k, b: &hotB, bCount: k * n, beta: 1,
          c: &hotC, cCount: m * n)
      }
    }
    var result = Result(
      kernels: .current, fmaPeakGFLOPS: [:], rawGemmGFLOPS: [:], rawGemmCacheHotGFLOPS: [:],
      models: [], pytorchSkipped: nil)
    var models = [
      ModelResult(
        model: "A", batchSize: batchA.labels.count, flopsPerStep: Self.flopsPerStep(a),
        samplesPerSecond: [:], stepGFLOPS: [:], pytorchSamplesPerSecond: [:]),
      ModelResult(
        model: "B", batchSize: batchB.labels.count, flopsPerStep: Self.flopsPerStep(b),
        samplesPerSecond: [:], stepGFLOPS: [:], pytorchSamplesPerSecond: [:]),
    ]
    for threads in threadCounts {
      let key = "\(threads)"
      BLAS.setThreads(threads)
      result.fmaPeakGFLOPS[key] = FMAPeak.measure(threads: threads) ?? .nan
      // Raw sgemm and model A's step interleaved, round by round, so both see the same machine.
      var raw: [Double] = []
      var hot: [Double] = []
      var step: [Double] = []
      // warm-up: first touch
      (_, _, _) = (round(rawGemm), round(cacheHotGemm), round { a.trainStep(batchA) })
      for _ in 0..<rounds {
        raw.append(round(rawGemm))
        hot.append(round(cacheHotGemm))
        step.append(round { a.trainStep(batchA) })
      }
      result.rawGemmGFLOPS[key] = rawFLOPs / median(raw) / 1e9
      result.rawGemmCacheHotGFLOPS?[key] = rawFLOPs / median(hot) / 1e9
      models[0].stepGFLOPS[key] = models[0].flopsPerStep / median(step) / 1e9
      models[0].samplesPerSecond[key] = Double(models[0].batchSize) / median(step)
      let stepB = seconds { b.trainStep(batchB) }
      models[1].stepGFLOPS[key] = models[1].flopsPerStep / stepB / 1e9
      models[1].samplesPerSecond[key] = Double(models[1].batchSize) / stepB
      log(
        String(
          format:
            "%d thread(s): FMA peak %.0f GFLOP/s; raw sgemm %.0f; model A step %.0f GFLOP/s, %.0f "
            + "samples/s; model B step %.0f GFLOP/s, %.0f samples/s",
          threads, result.fmaPeakGFLOPS[key]!, result.rawGemmGFLOPS[key]!,
          models[0].stepGFLOPS[key]!, models[0].samplesPerSecond[key]!,
          models[1].stepGFLOPS[key]!, models[1].samplesPerSecond[key]!))
    }
    BLAS.setThreads(1)
    if let pytorch {
      outer: for (i, name) in ["a-e2e", "b-e2e"].enumerated() {
        for threads in threadCounts {
          switch pytorch.measure(name, threads: threads, batchSize: models[i].batchSize) {
          case .success(let m):
            models[i].pytorchSamplesPerSecond["\(threads)"] = m.samplesPerSecond
            log(
              String(
                format: "PyTorch %@ %@, %d thread(s): %.0f samples/s", m.torch, name, threads,
                m.samplesPerSecond))
          case .failure(let error):
            result.pytorchSkipped = error.description
            break outer
          }
        }
      }
    } else {
      result.pytorchSkipped = "not asked for (--no-pytorch)"
    }
    result.models = models
    return result
  }

  /// The report: every figure against its yardsticks, and the targets of the issue that set them.
  public static func report(_ r: Result) -> String {
    var lines = [r.kernels.line]
    let keys = r.fmaPeakGFLOPS.keys.sorted { Int($0)! < Int($1)! }
    lines.append("")
    lines.append(
      "| threads | FMA peak GFLOP/s | raw sgemm (model A's GEMMs and operands) | same GEMMs, "
        + "cache-hot | model A step GFLOP/s | A samples/s | A PyTorch | model B step GFLOP/s | B "
        + "samples/s | B PyTorch |"
    )
    lines.append("|---|---|---|---|---|---|---|---|---|---|")
    let (a, b) = (r.models[0], r.models[1])
    func ratio(_ x: Double?, _ y: Double?) -> String {
      guard let x, let y, y > 0 else { return "–" }
      return String(format: "%.2f", x / y)
    }
    for key in keys {
      let peak = r.fmaPeakGFLOPS[key]!
      let raw = r.rawGemmGFLOPS[key]!
      func torch(_ m: ModelResult) -> String {
        guard let t = m.pytorchSamplesPerSecond[key] else { return "–" }
        return String(format: "%.0f (ours × %@)", t, ratio(m.samplesPerSecond[key], t))
      }
      lines.append(
        String(
          format:
            "| %@ | %.0f | %.0f (%@ × peak) | %@ | %.0f (%@ × sgemm, %@ × peak) | %.0f | %@ | %.0f "
            + "(%@ × peak) | %.0f | %@ |",
          key, peak, raw, ratio(raw, peak),
          r.rawGemmCacheHotGFLOPS?[key].map { String(format: "%.0f", $0) } ?? "–",
          a.stepGFLOPS[key]!, ratio(a.stepGFLOPS[key], raw), ratio(a.stepGFLOPS[key], peak),
          a.samplesPerSecond[key]!, torch(a), b.stepGFLOPS[key]!, ratio(b.stepGFLOPS[key], peak),
          b.samplesPerSecond[key]!, torch(b)))
    }
    if let skipped = r.pytorchSkipped { lines.append("\nPyTorch column skipped: \(skipped)") }
    lines.append(
      "\nModel A: 784 → 4 × 1024 → 10, batch \(a.batchSize); model B: conv 32-pool, 64, 64-pool, "
        + "128-gap, linear 10, batch \(b.batchSize); SGD momentum 0.9; data in memory."
    )
    return lines.joined(separator: "\n")
  }
}

/// The median of a non-empty list.
public func median(_ values: [Double]) -> Double {
  let sorted = values.sorted()
  guard !sorted.isEmpty else { return .nan }
  let mid = sorted.count / 2
  return sorted.count % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}
