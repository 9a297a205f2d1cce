import Data
import Foundation
import NN

/// Test-set results: accuracy and mean cross-entropy of every stage's head (accuracy by
/// depth); `accuracy` is the last stage's, the network's.
public struct EvalReport: Sendable, Codable, Equatable {
  public var accuracy: Double
  public var stageAccuracy: [Double]
  public var stageLoss: [Double]

  public init(accuracy: Double, stageAccuracy: [Double], stageLoss: [Double]) {
    (self.accuracy, self.stageAccuracy, self.stageLoss) = (accuracy, stageAccuracy, stageLoss)
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

  public init(
    epoch: Int, steps: Int, trainLoss: [Double], trainAccuracy: Double, learningRate: Float,
    seconds: Double, samplesPerSecond: Double, test: EvalReport
  ) {
    (self.epoch, self.steps, self.trainLoss, self.trainAccuracy, self.learningRate) =
      (epoch, steps, trainLoss, trainAccuracy, learningRate)
    (self.seconds, self.samplesPerSecond, self.test) = (seconds, samplesPerSecond, test)
  }
}

extension EpochReport {
  /// The one line printed per epoch, the same from the trainer and the daemon.
  public static func line(_ report: EpochReport, of epochs: Int) -> String {
    let depth = report.test.stageAccuracy.map { String(format: "%.2f", $0 * 100) }.joined(separator: " ")
    return String(
      format: "epoch %d/%d  loss %.4f  train %.2f%%  test %.2f%%  by depth [%@]  %.1f s  %.0f samples/s",
      report.epoch + 1, epochs, report.trainLoss.last ?? 0, report.trainAccuracy * 100,
      report.test.accuracy * 100, depth, report.seconds, report.samplesPerSecond)
  }
}

/// Trains every stage in one process: the numerical reference for the daemon.
///
/// `e2e` backpropagates through all stages; `greedy` trains each stage on its own head with
/// its input detached, stage by stage on each batch (`lockstep`).
public final class Trainer {
  public let config: RunConfig
  public let stages: [Stage]
  public let train: Dataset
  public let test: Dataset
  public let order: BatchOrder
  /// Optimizer steps taken so far (the learning-rate schedule's clock).
  public private(set) var step = 0

  public init(config: RunConfig, train: Dataset, test: Dataset) throws(ConfigError) {
    self.config = config
    self.train = train
    self.test = test
    stages = try config.buildStages(sampleShape: train.sampleShape, classes: train.classes)
    order = BatchOrder(
      count: train.count, batchSize: config.training.batchSize, shuffle: true, seed: config.seed)
  }

  public var learningRate: Float {
    config.learningRateSchedule.rate(
      base: config.optimizer.learningRate, step: step, stepsPerEpoch: order.batchesPerEpoch,
      totalEpochs: config.training.epochs)
  }

  /// One optimizer step of every stage on one batch; returns each stage's loss (one loss for
  /// e2e) and the network output's correct count.
  @discardableResult
  public func trainStep(_ batch: Batch) -> (losses: [Float], correct: Int) {
    let lr = learningRate
    defer { step += 1 }
    switch config.method {
    case .greedy:
      var h = batch.images
      var losses: [Float] = []
      var correct = 0
      for stage in stages {
        let (output, result) = stage.trainLocal(h, labels: batch.labels, learningRate: lr)
        losses.append(result.loss)
        correct = result.correct
        h = output
      }
      return (losses, correct)
    case .e2e:
      var h = batch.images
      var caches: [[LayerCache]] = []
      for stage in stages {
        let (output, cache) = stage.forwardBody(h)
        caches.append(cache)
        h = output
      }
      let last = stages[stages.count - 1]
      let (logits, headCaches) = last.forwardHead(h)
      let result = softmaxCrossEntropy(logits: logits, labels: batch.labels)
      var grad = last.head.backward(result.gradient, headCaches, last.store, inputGradient: true)
      for (k, stage) in stages.enumerated().reversed() {
        guard let g = grad else { break }
        grad = stage.body.backward(g, caches[k], stage.store, inputGradient: k > 0)
      }
      for stage in stages { stage.optimizer.update(stage.store, learningRate: lr) }
      return ([result.loss], result.correct)
    }
  }

  /// Trains one epoch; `progress(done, total, loss)` is called after every batch.
  public func trainEpoch(_ epoch: Int, progress: ((Int, Int, Float) -> Void)? = nil) -> EpochReport {
    let batches = order.batches(epoch: epoch)
    let start = ContinuousClock.now
    let lr = learningRate
    var lossSums = [Double](repeating: 0, count: config.method == .e2e ? 1 : stages.count)
    var correct = 0
    for (i, indices) in batches.enumerated() {
      let (losses, right) = trainStep(train.batch(indices))
      for (k, loss) in losses.enumerated() { lossSums[k] += Double(loss) }
      correct += right
      progress?(i + 1, batches.count, losses.last ?? 0)
    }
    let seconds = (ContinuousClock.now - start).seconds
    return EpochReport(
      epoch: epoch, steps: step, trainLoss: lossSums.map { $0 / Double(max(batches.count, 1)) },
      trainAccuracy: Double(correct) / Double(max(train.count, 1)), learningRate: lr,
      seconds: seconds, samplesPerSecond: Double(train.count) / max(seconds, 1e-9),
      test: evaluate())
  }

  /// Accuracy and loss of every stage's head on the test set (only the last for e2e, whose
  /// other heads are not trained).
  public func evaluate() -> EvalReport {
    let evaluated = config.method == .e2e ? [stages.count - 1] : Array(stages.indices)
    var correct = [Int](repeating: 0, count: stages.count)
    var lossSum = [Double](repeating: 0, count: stages.count)
    let evalOrder = BatchOrder(count: test.count, batchSize: config.training.evalBatchSize, shuffle: false, seed: 0)
    for indices in evalOrder.batches(epoch: 0) {
      let batch = test.batch(indices)
      var h = batch.images
      for (k, stage) in stages.enumerated() {
        let (output, logits) = stage.infer(h)
        if evaluated.contains(k) {
          let result = softmaxCrossEntropy(logits: logits, labels: batch.labels)
          correct[k] += result.correct
          lossSum[k] += Double(result.loss) * Double(indices.count)
        }
        h = output
      }
    }
    let n = Double(max(test.count, 1))
    let accuracy = evaluated.map { Double(correct[$0]) / n }
    return EvalReport(
      accuracy: accuracy.last ?? 0, stageAccuracy: accuracy, stageLoss: evaluated.map { lossSum[$0] / n })
  }
}

extension Duration {
  /// The duration in seconds, as a Double.
  public var seconds: Double {
    let (s, attoseconds) = components
    return Double(s) + Double(attoseconds) * 1e-18
  }
}
