/// Collects one epoch's pieces as they arrive — every stage's train and eval totals, and the
/// sink's markers — and turns them into the same `EpochReport` the one-process trainer writes.
public struct EpochLedger: Sendable {
  public var train: [PhaseTotals?]
  public var eval: [PhaseTotals?]
  public var startMicros: Int64
  public var trainEndMicros: Int64?
  public var evalEndSeen = false
  /// Each stage's replicas, and how many of them have sent their train and eval totals.
  let replicas: [Int]
  var trainReports: [Int]
  var evalReports: [Int]
  /// Per stage, each replica's training samples.
  var replicaSamples: [[Int]]

  public init(stageCount: Int, startMicros: Int64) {
    self.init(replicas: Array(repeating: 1, count: stageCount), startMicros: startMicros)
  }

  /// A ledger for stages with `replicas[k]` replicas each, whose totals add up.
  public init(replicas: [Int], startMicros: Int64) {
    train = Array(repeating: nil, count: replicas.count)
    eval = Array(repeating: nil, count: replicas.count)
    (self.replicas, self.startMicros) = (replicas, startMicros)
    (trainReports, evalReports) = (replicas.map { _ in 0 }, replicas.map { _ in 0 })
    replicaSamples = replicas.map { Array(repeating: 0, count: $0) }
  }

  /// A stage's totals, from its replica `replica`.
  public mutating func add(_ totals: PhaseTotals, replica: Int = 0) {
    let k = totals.stage
    guard train.indices.contains(k) else { return }
    if totals.phase == .train, replicaSamples[k].indices.contains(replica) {
      replicaSamples[k][replica] += totals.samples
    }
    func into(_ slot: inout PhaseTotals?, _ count: inout Int) {
      count += 1
      if slot == nil { slot = totals } else { slot!.merge(totals) }
    }
    if totals.phase == .train {
      into(&train[k], &trainReports[k])
    } else {
      into(&eval[k], &evalReports[k])
    }
  }

  public var isComplete: Bool {
    evalEndSeen && trainEndMicros != nil && trainReports == replicas && evalReports == replicas
  }

  public func report(epoch: Int, steps: Int, learningRate: Float) -> EpochReport {
    // Stages without a local loss (e2e's inner stages) report no samples and are left out.
    let trainTotals = train.map { $0! }.filter { $0.samples > 0 }
    let evalTotals = eval.map { $0! }
    let seconds = Double((trainEndMicros ?? startMicros) - startMicros) / 1e6
    let samples = trainTotals.last!.samples
    let feedback = train.compactMap { $0?.feedback }
    var report = EpochReport(
      epoch: epoch, steps: steps,
      trainLoss: trainTotals.map { $0.batchLossSum / Double(max($0.batches, 1)) },
      trainAccuracy: Double(trainTotals.last!.correct) / Double(max(samples, 1)),
      learningRate: learningRate, seconds: seconds,
      samplesPerSecond: Double(samples) / max(seconds, 1e-9),
      test: EvalReport(scoring: evalTotals), feedback: feedback.isEmpty ? nil : feedback)
    if replicas.contains(where: { $0 > 1 }) {
      report.replicaSamplesPerSecond = replicaSamples.map {
        $0.map { Double($0) / max(seconds, 1e-9) }
      }
    }
    return report
  }
}

extension EvalReport {
  /// The test-set figures of every stage's evaluation totals; stages without a head (kernel
  /// hidden stages) or whose head is not scored (e2e's inner stages) score nothing and are
  /// left out.
  public init(scoring totals: [PhaseTotals]) {
    let scored = totals.filter { $0.samples > 0 }
    let accuracy = scored.map { Double($0.correct) / Double($0.samples) }
    self.init(
      accuracy: accuracy.last ?? 0, stageAccuracy: accuracy,
      stageLoss: scored.map { $0.weightedLossSum / Double($0.samples) }, stages: scored.map(\.stage)
    )
  }
}
