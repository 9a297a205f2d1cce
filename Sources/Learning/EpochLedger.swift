/// Collects one epoch's pieces as they arrive — every stage's train and eval totals, and the
/// sink's markers — and turns them into the same `EpochReport` the one-process trainer writes.
public struct EpochLedger: Sendable {
  public var train: [PhaseTotals?]
  public var eval: [PhaseTotals?]
  public var startMicros: Int64
  public var trainEndMicros: Int64?
  public var evalEndSeen = false
  /// Each stage's replicas, and which of them have sent their train and eval totals.
  let replicas: [Int]
  var trainReported: [Set<Int>]
  var evalReported: [Set<Int>]
  /// Per stage, each replica's training samples.
  var replicaSamples: [[Int]]
  /// Replicas that died during the job (`excuse`): their totals are not awaited; what they had
  /// handed on is credited from their senders' counts, which are awaited (`owed`).
  var excused: [Set<Int>]
  var owed: [Int]
  /// Per stage, what dead replicas had handed on and never reported: training batches and
  /// evaluation samples (in the accounting, not in the losses and accuracies).
  public private(set) var creditedBatches: [Int]
  public private(set) var creditedEvalSamples: [Int]

  public init(stageCount: Int, startMicros: Int64) {
    self.init(replicas: Array(repeating: 1, count: stageCount), startMicros: startMicros)
  }

  /// A ledger for stages with `replicas[k]` replicas each, whose totals add up.
  public init(replicas: [Int], startMicros: Int64) {
    train = Array(repeating: nil, count: replicas.count)
    eval = Array(repeating: nil, count: replicas.count)
    (self.replicas, self.startMicros) = (replicas, startMicros)
    let none = replicas.map { _ in Set<Int>() }
    (trainReported, evalReported, excused) = (none, none, none)
    replicaSamples = replicas.map { Array(repeating: 0, count: $0) }
    owed = replicas.map { _ in 0 }
    (creditedBatches, creditedEvalSamples) = (owed, owed)
  }

  /// A stage's totals, from its replica `replica` (once per phase; an excused replica's are
  /// not taken: its senders' counts stand for them).
  public mutating func add(_ totals: PhaseTotals, replica: Int = 0) {
    let k = totals.stage
    guard train.indices.contains(k), !excused[k].contains(replica) else { return }
    let isTrain = totals.phase == .train
    guard !(isTrain ? trainReported : evalReported)[k].contains(replica) else { return }
    if isTrain, replicaSamples[k].indices.contains(replica) {
      replicaSamples[k][replica] += totals.samples
    }
    func into(_ slot: inout PhaseTotals?, _ reported: inout Set<Int>) {
      reported.insert(replica)
      if slot == nil { slot = totals } else { slot!.merge(totals) }
    }
    if isTrain {
      into(&train[k], &trainReported[k])
    } else {
      into(&eval[k], &evalReported[k])
    }
  }

  /// Replica `replica` of stage `stage` died: its totals for the phases it has not reported
  /// are not awaited; instead each of its `senders` says what it had handed on (`credit`).
  public mutating func excuse(stage k: Int, replica: Int, senders: Int) {
    guard excused.indices.contains(k), !excused[k].contains(replica) else { return }
    excused[k].insert(replica)
    if hasUnreported(stage: k, replica: replica) { owed[k] += senders }
  }

  /// Whether a replica has not sent its totals for one of the phases.
  func hasUnreported(stage k: Int, replica: Int) -> Bool {
    !trainReported[k].contains(replica) || !evalReported[k].contains(replica)
  }

  /// One sender's count of what excused replica `replica` of stage `stage` handed on in this
  /// epoch: training batches (and their samples) or evaluation samples, for the phases it
  /// did not report.
  public mutating func credit(
    stage k: Int, replica: Int, train: (batches: Int, samples: Int), evalSamples: Int
  ) {
    guard excused.indices.contains(k), excused[k].contains(replica), owed[k] > 0,
      hasUnreported(stage: k, replica: replica)
    else { return }
    owed[k] -= 1
    if !trainReported[k].contains(replica) {
      creditedBatches[k] += train.batches
      if replicaSamples[k].indices.contains(replica) { replicaSamples[k][replica] += train.samples }
    }
    if !evalReported[k].contains(replica) { creditedEvalSamples[k] += evalSamples }
  }

  /// Some dead replica's senders have not said yet what it handed on.
  public var owesCredits: Bool { owed.contains { $0 > 0 } }

  public var isComplete: Bool {
    evalEndSeen && trainEndMicros != nil && owed.allSatisfy { $0 == 0 }
      && replicas.indices.allSatisfy { k in
        let all = Set(0..<replicas[k])
        return trainReported[k].union(excused[k]) == all && evalReported[k].union(excused[k]) == all
      }
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
