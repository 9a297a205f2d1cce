import Data
import Foundation
import Linalg
import NN

/// `stagewise bench kernels`: how close a whole training step of an MLP comes to raw sgemm
/// on the same shapes, measured side by side in one run.
public struct KernelBenchmark {
  public struct Result: Sendable, Codable {
    public var coreName: String
    public var batchSize: Int
    public var gemmFLOPsPerStep: Double
    public var stepGFLOPS: Double
    public var rawGemmGFLOPS: Double
    public var ratio: Double
    /// e2e training samples/s by BLAS thread count.
    public var samplesPerSecond: [Int: Double]
  }

  public var batchSize = 128
  public var widths = [1024, 1024, 1024, 1024]
  public var rounds = 5
  public var stepsPerRound = 10
  public var threadCounts = [1, 2]

  public init() {}

  /// Model A trained end to end: `widths` hidden layers, one per stage, 10 classes.
  func makeTrainer() throws -> Trainer {
    var config = RunConfig()
    config.method = .e2e
    config.stages = widths.map { StageConfig(layers: [LayerConfig(.linear, out: $0), LayerConfig(.relu)]) }
    config.training.batchSize = batchSize
    let data = SyntheticDataset.make(count: batchSize, side: 28, seed: 1)
    return try Trainer(config: config, train: data, test: data.prefix(10))
  }

  /// The (m, n, k, transA, transB) of every GEMM one e2e training step makes, in order.
  static func gemmShapes(_ stages: [Stage], batch: Int) -> [(Int, Int, Int, Transpose, Transpose)] {
    let bodies: [any Layer] = stages.flatMap(\.body.layers)
    let classifier: [any Layer] = stages.last?.head?.classifier.layers ?? []
    let linears = (bodies + classifier).compactMap { $0 as? Linear }
    var shapes: [(Int, Int, Int, Transpose, Transpose)] = []
    for l in linears { shapes.append((batch, l.outputs, l.inputs, .none, .transposed)) }  // forward
    for (i, l) in linears.enumerated().reversed() {
      shapes.append((l.outputs, l.inputs, batch, .transposed, .none))  // weight gradient
      if i > 0 { shapes.append((batch, l.inputs, l.outputs, .none, .none)) }  // input gradient
    }
    return shapes
  }

  public func run(log: (String) -> Void) throws -> Result {
    let trainer = try makeTrainer()
    let batch = trainer.train.batch(ArraySlice(0..<batchSize))
    let shapes = Self.gemmShapes(trainer.stages, batch: batchSize)
    let flops = shapes.reduce(0.0) { $0 + 2 * Double($1.0 * $1.1 * $1.2) }
    let largest = shapes.map { max($0.0 * $0.2, $0.2 * $0.1, $0.0 * $0.1) }.max() ?? 1
    var a = [Float](repeating: 0.01, count: largest)
    var b = [Float](repeating: 0.01, count: largest)
    var c = [Float](repeating: 0, count: largest)

    func rawGemmSeconds() -> Double {
      let start = ContinuousClock.now
      for _ in 0..<stepsPerRound {
        for (m, n, k, ta, tb) in shapes {
          gemm(ta, tb, m: m, n: n, k: k, a: &a, aCount: m * k, b: &b, bCount: k * n, beta: 1, c: &c, cCount: m * n)
        }
      }
      return (ContinuousClock.now - start).seconds / Double(stepsPerRound)
    }
    func stepSeconds() -> Double {
      let start = ContinuousClock.now
      for _ in 0..<stepsPerRound { trainer.trainStep(batch) }
      return (ContinuousClock.now - start).seconds / Double(stepsPerRound)
    }

    BLAS.setThreads(1)
    _ = rawGemmSeconds()
    _ = stepSeconds()  // warm-up: first-touch of buffers and optimizer state
    var raw: [Double] = [], step: [Double] = []
    for _ in 0..<rounds {  // interleaved, so both see the same machine
      raw.append(rawGemmSeconds())
      step.append(stepSeconds())
    }
    let rawGF = flops / median(raw) / 1e9
    let stepGF = flops / median(step) / 1e9
    log(String(format: "1 thread: training step %.1f GFLOP/s, raw sgemm %.1f GFLOP/s, ratio %.2f", stepGF, rawGF, stepGF / rawGF))

    var perThreads: [Int: Double] = [:]
    for threads in threadCounts {
      BLAS.setThreads(threads)
      _ = stepSeconds()
      let seconds = median((0..<rounds).map { _ in stepSeconds() })
      perThreads[threads] = Double(batchSize) / seconds
      log(String(format: "%d thread(s): e2e %.0f samples/s", threads, Double(batchSize) / seconds))
    }
    BLAS.setThreads(1)
    return Result(
      coreName: BLAS.coreName, batchSize: batchSize, gemmFLOPsPerStep: flops, stepGFLOPS: stepGF,
      rawGemmGFLOPS: rawGF, ratio: stepGF / rawGF, samplesPerSecond: perThreads)
  }
}

/// The median of a non-empty list.
public func median(_ values: [Double]) -> Double {
  let sorted = values.sorted()
  guard !sorted.isEmpty else { return .nan }
  let mid = sorted.count / 2
  return sorted.count % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}
