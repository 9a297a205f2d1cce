import Datasets
import Foundation
import Hardware
import NN

/// Test-set results: accuracy and mean cross-entropy of every stage's head (accuracy by
/// depth); `accuracy` is the last stage's, the network's.
public struct EvalReport: Sendable, Codable, Equatable {
  public var accuracy: Double
  public var stageAccuracy: [Double]
  public var stageLoss: [Double]
  /// Which stage each entry belongs to (stages without a head are not evaluated).
  public var stages: [Int]?

  public init(accuracy: Double, stageAccuracy: [Double], stageLoss: [Double], stages: [Int]? = nil) {
    (self.accuracy, self.stageAccuracy, self.stageLoss, self.stages) = (accuracy, stageAccuracy, stageLoss, stages)
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

  public init(
    epoch: Int, steps: Int, trainLoss: [Double], trainAccuracy: Double, learningRate: Float,
    seconds: Double, samplesPerSecond: Double, test: EvalReport, activeStage: Int? = nil, feedback: [FeedbackTotals]? = nil
  ) {
    (self.epoch, self.steps, self.trainLoss, self.trainAccuracy, self.learningRate) =
      (epoch, steps, trainLoss, trainAccuracy, learningRate)
    (self.seconds, self.samplesPerSecond, self.test, self.activeStage) = (seconds, samplesPerSecond, test, activeStage)
    self.feedback = feedback
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

  public mutating func applied(staleness: Int) {
    applied += 1
    stalenessSum += staleness
    maxStaleness = max(maxStaleness, staleness)
  }

  public var meanStaleness: Double { Double(stalenessSum) / Double(max(applied, 1)) }
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

  public init(batchesFed: Int, batchesTrained: [Int], evalSamplesFed: Int, evalSamplesScored: [Int]) {
    (self.batchesFed, self.batchesTrained, self.evalSamplesFed, self.evalSamplesScored) =
      (batchesFed, batchesTrained, evalSamplesFed, evalSamplesScored)
  }
}

extension EpochReport {
  /// The one line printed per epoch, the same from the trainer and the daemon.
  public static func line(_ report: EpochReport, of epochs: Int) -> String {
    let depth = report.test.stageAccuracy.map { String(format: "%.2f", $0 * 100) }.joined(separator: " ")
    let prefix = report.activeStage.map { "stage \($0) " } ?? ""
    return prefix + String(
      format: "epoch %d/%d  loss %.4f  train %.2f%%  test %.2f%%  by depth [%@]  %.1f s  %.0f samples/s",
      report.epoch + 1, epochs, report.trainLoss.last ?? 0, report.trainAccuracy * 100,
      report.test.accuracy * 100, depth, report.seconds, report.samplesPerSecond)
  }
}

/// Trains every stage in one process: the numerical reference for the daemon.
///
/// `e2e` backpropagates through all stages; the local methods train each stage on its own
/// objective with its input detached, stage by stage on each batch (`lockstep` order), or one
/// stage after another (`sequential`).
public final class Trainer {
  public let config: RunConfig
  public let stages: [Stage]
  /// What travels into each stage besides its input (the same as between processes).
  public let handoffs: [Handoff]
  public let train: Dataset
  public let test: Dataset
  public let order: BatchOrder
  /// How training images are moved (`data.augment`), as the scheduler moves them.
  let augmentation: Augmentation?
  /// Optimizer steps taken so far (the learning-rate schedule's clock).
  public private(set) var step = 0
  /// DFA and DNI: the feedback each stage received this epoch (in one process it is never stale).
  public private(set) var feedback: [FeedbackTotals] = []

  public init(config: RunConfig, train: Dataset, test: Dataset) throws(ConfigError) {
    self.config = config
    self.train = train
    self.test = test
    stages = try config.buildStages(sampleShape: train.sampleShape, classes: train.classes)
    handoffs = config.handoffs(stages)
    augmentation = config.augmentation
    order = BatchOrder(
      count: train.count, batchSize: config.training.batchSize, shuffle: true, seed: config.seed)
    feedback = stages.dropLast().map { FeedbackTotals(stage: $0.index) }
  }

  public var learningRate: Float {
    config.learningRate(step: step, stepsPerEpoch: order.batchesPerEpoch)
  }


  /// One optimizer step on one batch; returns each trained stage's loss (one loss for e2e)
  /// and the correct count of the last trained stage's head. With `activeStage` (the
  /// `sequential` schedule) earlier stages only run forward and later ones not at all.
  @discardableResult
  public func trainStep(_ batch: Batch, activeStage: Int? = nil) -> (losses: [Float], correct: Int) {
    let lr = learningRate
    defer { step += 1 }
    if config.method == .e2e { return trainEndToEnd(batch, learningRate: lr) }
    var previous: Stage.Pass?
    var losses: [Float] = []
    var correct = 0
    // DFA: the hidden stages' passes, waiting for the last stage's error.
    var awaitingError: [(Stage, Stage.Pass, loss: Int)] = []
    var lastError: Tensor?
    for stage in stages.prefix((activeStage ?? stages.count - 1) + 1) {
      let input = handoffs[stage.index].input(after: previous, batch: batch)
      if let activeStage, stage.index < activeStage {
        previous = stage.forward(input, training: false)  // frozen: its inference form
        continue
      }
      guard stage.trainsAtForward else {
        previous = stage.forward(input)
        awaitingError.append((stage, previous!, losses.count))
        losses.append(0)
        continue
      }
      // DNI: the gradient at this stage's input is the previous stage's synthesiser target.
      let returnsTarget = stage.index > 0 && config.method.returnsInputGradients
      let (pass, result, dx) = stage.trainLocal(input, learningRate: lr, inputGradient: returnsTarget)
      if returnsTarget, let dx, let previous {
        let synthesiser = stages[stage.index - 1].synthesiser!
        losses[losses.count - 1] = synthesiser.train(previous.h, labels: batch.labels, target: dx)
        feedback[stage.index - 1].applied(staleness: 0)
      }
      losses.append(result.loss)
      correct = result.correct
      previous = pass
      lastError = result.gradient
    }
    // DFA: the last stage's output error, ∂L/∂logits = (softmax − onehot)/B, to every hidden stage.
    if !awaitingError.isEmpty, let error = lastError {
      for (stage, pass, slot) in awaitingError {
        losses[slot] = stage.trainOnError(pass, error: error, learningRate: lr)
        feedback[stage.index].applied(staleness: 0)
      }
    }
    return (losses, correct)
  }

  func trainEndToEnd(_ batch: Batch, learningRate lr: Float) -> (losses: [Float], correct: Int) {
    var h = batch.images
    var caches: [[LayerCache]] = []
    for stage in stages {
      // What the daemon's stage reads of its input (`daemon.wireFormat`); the gradient
      // goes back to the sender's output as it is (straight through).
      let (output, cache) = stage.forwardBody(handoffs[stage.index].format.roundTrip(h))
      caches.append(cache)
      h = output
    }
    let last = stages[stages.count - 1]
    let result = last.endToEndTail(h, caches[last.index], labels: batch.labels, inputGradient: last.index > 0)
    var grad = result.inputGradient
    for (k, stage) in stages.enumerated().reversed() {
      if k < last.index, let g = grad { grad = stage.body.backward(g, caches[k], stage.store, inputGradient: k > 0) }
      // Stage k's gradients are complete and its weights no longer needed: update now, while
      // they are still in cache (as each worker of the daemon does after its backward).
      stage.optimizer.update(stage.store, learningRate: lr)
    }
    return ([result.loss], result.correct)
  }

  /// Trains one epoch; `progress(done, total, loss)` is called after every batch. With
  /// `activeStage`, only that stage trains (the `sequential` schedule).
  public func trainEpoch(_ epoch: Int, activeStage: Int? = nil, progress: ((Int, Int, Float) -> Void)? = nil) -> EpochReport {
    let batches = order.batches(epoch: epoch)
    feedback = stages.dropLast().map { FeedbackTotals(stage: $0.index) }
    let start = ContinuousClock.now
    let lr = learningRate
    var lossSums: [Double] = []
    var correct = 0
    for (i, indices) in batches.enumerated() {
      let (losses, right) = trainStep(train.trainingBatch(indices, epoch: epoch, augmentation: augmentation).batch, activeStage: activeStage)
      if lossSums.isEmpty { lossSums = [Double](repeating: 0, count: losses.count) }
      for (k, loss) in losses.enumerated() { lossSums[k] += Double(loss) }
      correct += right
      progress?(i + 1, batches.count, losses.last ?? 0)
    }
    let seconds = (ContinuousClock.now - start).seconds
    return EpochReport(
      epoch: epoch, steps: step, trainLoss: lossSums.map { $0 / Double(max(batches.count, 1)) },
      trainAccuracy: Double(correct) / Double(max(train.count, 1)), learningRate: lr,
      seconds: seconds, samplesPerSecond: Double(train.count) / max(seconds, 1e-9),
      test: evaluate(), activeStage: activeStage, feedback: config.method.hasFeedback ? feedback : nil)
  }

  /// Runs the configured training: every epoch, or under `sequential` one phase of
  /// `training.epochs` per stage with the schedule restarted for each. `onEpoch` sees every
  /// report and ends the run early by returning true; `progress(epoch, done, total, loss)`
  /// follows every batch.
  @discardableResult
  public func run(
    progress: ((Int, Int, Int, Float) -> Void)? = nil, onEpoch: (EpochReport) throws -> Bool
  ) rethrows -> [EpochReport] {
    var reports: [EpochReport] = []
    let phases: [Int?] = config.schedule == .sequential ? stages.map(\.index) : [nil]
    for activeStage in phases {
      if activeStage != nil { restartSchedule() }
      for epoch in 0..<config.training.epochs {
        let report = trainEpoch(epoch, activeStage: activeStage) { progress?(epoch, $0, $1, $2) }
        reports.append(report)
        if try onEpoch(report) { return reports }
      }
    }
    return reports
  }

  /// Runs the configured training to the end.
  @discardableResult
  public func run() -> [EpochReport] { run(onEpoch: { _ in false }) }

  /// Restarts the learning-rate schedule (the `sequential` schedule does, for each stage).
  public func restartSchedule() { step = 0 }

  /// Accuracy and loss of every stage's head on the test set (accuracy by depth): stages
  /// without a head (kernel hidden stages) are skipped, and e2e reports only the last.
  public func evaluate() -> EvalReport {
    let evaluated = stages.filter { $0.head != nil && config.scoresHead(ofStage: $0.index) }.map(\.index)
    var correct = [Int](repeating: 0, count: stages.count)
    var lossSum = [Double](repeating: 0, count: stages.count)
    let evalOrder = BatchOrder(count: test.count, batchSize: config.training.evalBatchSize, shuffle: false, seed: 0)
    for indices in evalOrder.batches(epoch: 0) {
      let batch = test.batch(indices)
      for (index, logits) in infer(batch).enumerated() {
        guard let logits else { continue }
        let result = softmaxCrossEntropy(logits: logits, labels: batch.labels)
        correct[index] += result.correct
        lossSum[index] += Double(result.loss) * Double(indices.count)
      }
    }
    let n = Double(max(test.count, 1))
    let accuracy = evaluated.map { Double(correct[$0]) / n }
    return EvalReport(
      accuracy: accuracy.last ?? 0, stageAccuracy: accuracy, stageLoss: evaluated.map { lossSum[$0] / n },
      stages: evaluated)
  }

  /// Every stage's logits [B, classes] on `batch` in evaluation (nil where a stage's head does
  /// not score); the last stage's are the network's prediction.
  public func infer(_ batch: Batch) -> [Tensor?] {
    var previous: Stage.Pass?
    return stages.map { stage in
      let input = handoffs[stage.index].input(after: previous, batch: batch)
      let (pass, logits) = stage.infer(input, scoringHead: config.scoresHead(ofStage: stage.index))
      previous = pass
      return logits
    }
  }
}
