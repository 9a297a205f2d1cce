/// Which pass a stage's totals are for.
public enum Phase: String, Codable, Sendable { case train, eval }

/// A stage's totals over one epoch's training or evaluation batches.
public struct PhaseTotals: Codable, Sendable, Equatable {
  public var stage: Int
  public var epoch: Int
  public var phase: Phase
  /// Σ of per-batch mean losses (train loss = batchLossSum / batches, as the trainer reports).
  public var batchLossSum: Double = 0
  /// Σ of loss × batch size (eval loss = weightedLossSum / samples).
  public var weightedLossSum: Double = 0
  public var correct = 0
  public var samples = 0
  public var batches = 0
  /// DFA and DNI, stages before the last (train phase): what came back, and what was stale.
  public var feedback: FeedbackTotals?

  public init(stage: Int, epoch: Int, phase: Phase) {
    (self.stage, self.epoch, self.phase) = (stage, epoch, phase)
  }

  public mutating func add(loss: Float, correct right: Int, samples n: Int) {
    countBatch(correct: right, samples: n)
    addLoss(loss, samples: n)
  }

  /// A batch trained, its loss to come (a DNI hidden stage's: its synthesiser's, on the target).
  public mutating func countBatch(correct right: Int = 0, samples n: Int) {
    correct += right
    samples += n
    batches += 1
  }

  public mutating func addLoss(_ loss: Float, samples n: Int) {
    batchLossSum += Double(loss)
    weightedLossSum += Double(loss) * Double(n)
  }

  /// Another replica's totals of the same stage, epoch and phase, added in.
  public mutating func merge(_ other: PhaseTotals) {
    (batchLossSum, weightedLossSum) = (
      batchLossSum + other.batchLossSum, weightedLossSum + other.weightedLossSum
    )
    (correct, samples, batches) = (
      correct + other.correct, samples + other.samples, batches + other.batches
    )
    if let theirs = other.feedback { feedback = feedback.map { $0.merged(theirs) } ?? theirs }
  }
}

/// What came back to one stage over an epoch (DFA's errors, DNI's gradient targets), counted.
public struct FeedbackTotals: Codable, Sendable, Equatable {
  public var stage: Int
  /// Feedback used: a DFA update, a synthesiser step.
  public var applied = 0
  /// Batches whose feedback was not used: evicted from the stage's bounded store (or given up
  /// on at a marker) before it arrived. Feedback that comes later is dropped, not counted again.
  public var stale = 0
  /// Σ and max over applied feedback of the batches this stage sent forward between the
  /// batch and its feedback (0 in lockstep order).
  public var stalenessSum = 0
  public var maxStaleness = 0

  public init(stage: Int) { self.stage = stage }

  /// This stage's figures and another replica's of it, together.
  func merged(_ other: FeedbackTotals) -> FeedbackTotals {
    var both = self
    (both.applied, both.stale) = (applied + other.applied, stale + other.stale)
    both.stalenessSum += other.stalenessSum
    both.maxStaleness = max(maxStaleness, other.maxStaleness)
    return both
  }

  public mutating func applied(staleness: Int) {
    applied += 1
    stalenessSum += staleness
    maxStaleness = max(maxStaleness, staleness)
  }

  public var meanStaleness: Double { Double(stalenessSum) / Double(max(applied, 1)) }
}
