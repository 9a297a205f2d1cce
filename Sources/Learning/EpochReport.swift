import Foundation

/// Test-set results: accuracy and mean cross-entropy of every stage's head (accuracy by
/// depth); `accuracy` is the last stage's, the network's.
public struct EvalReport: Sendable, Codable, Equatable {
  public var accuracy: Double
  public var stageAccuracy: [Double]
  public var stageLoss: [Double]
  /// Which stage each entry belongs to (stages without a head are not evaluated).
  public var stages: [Int]?

  public init(accuracy: Double, stageAccuracy: [Double], stageLoss: [Double], stages: [Int]? = nil)
  {
    (self.accuracy, self.stageAccuracy, self.stageLoss, self.stages) = (
      accuracy, stageAccuracy, stageLoss, stages
    )
  }
}

/// One epoch's figures, as written to `metrics.jsonl`.
public struct EpochReport: Sendable, Codable, Equatable {
  public var epoch: Int
  public var steps: Int
  /// Mean training loss of each stage's local objective (one value for e2e).
  public var trainLoss: [Double]
  /// Training accuracy of the network's output while it trained.
  public var trainAccuracy: Double
  public var learningRate: Float
  public var seconds: Double
  public var samplesPerSecond: Double
  public var test: EvalReport
  /// The stage being trained, under the `sequential` schedule.
  public var activeStage: Int?
  /// The daemon's count of this epoch's batches and samples (nil from the one-process trainer).
  public var accounting: EpochAccounting?
  /// DFA and DNI: what came back to each stage but the last (errors, gradient targets).
  public var feedback: [FeedbackTotals]?
  /// With stage replicas: per stage, each replica's training samples over the epoch's time
  /// (how the routing shared the stage out; nil without replicas).
  public var replicaSamplesPerSecond: [[Double]]?

  public init(
    epoch: Int, steps: Int, trainLoss: [Double], trainAccuracy: Double, learningRate: Float,
    seconds: Double, samplesPerSecond: Double, test: EvalReport, activeStage: Int? = nil,
    feedback: [FeedbackTotals]? = nil
  ) {
    (self.epoch, self.steps, self.trainLoss, self.trainAccuracy, self.learningRate) =
      (epoch, steps, trainLoss, trainAccuracy, learningRate)
    (self.seconds, self.samplesPerSecond, self.test, self.activeStage) = (
      seconds, samplesPerSecond, test, activeStage
    )
    self.feedback = feedback
  }
}

/// One epoch of a daemon run, counted: training batches the scheduler fed and each stage
/// trained (after a mid-epoch resume, those since the cut), evaluation samples fed and each
/// stage scored. Equal when nothing was lost; a stage with nothing to report (an e2e inner
/// stage's loss, a kernel stage's head) counts 0.
public struct EpochAccounting: Sendable, Codable, Equatable {
  public var batchesFed: Int
  public var batchesTrained: [Int]
  public var evalSamplesFed: Int
  public var evalSamplesScored: [Int]

  public init(batchesFed: Int, batchesTrained: [Int], evalSamplesFed: Int, evalSamplesScored: [Int])
  {
    (self.batchesFed, self.batchesTrained, self.evalSamplesFed, self.evalSamplesScored) =
      (batchesFed, batchesTrained, evalSamplesFed, evalSamplesScored)
  }
}

extension EpochReport {
  /// The one line printed per epoch, the same from the trainer and the daemon.
  public static func line(_ report: EpochReport, of epochs: Int) -> String {
    let depth = report.test.stageAccuracy.map { String(format: "%.2f", $0 * 100) }.joined(
      separator: " ")
    let prefix = report.activeStage.map { "stage \($0) " } ?? ""
    return prefix
      + String(
        format:
          "epoch %d/%d  loss %.4f  train %.2f%%  test %.2f%%  by depth [%@]  %.1f s  %.0f "
          + "samples/s",
        report.epoch + 1, epochs, report.trainLoss.last ?? 0, report.trainAccuracy * 100,
        report.test.accuracy * 100, depth, report.seconds, report.samplesPerSecond)
  }
}
