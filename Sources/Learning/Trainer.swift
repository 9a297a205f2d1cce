import Datasets
import Foundation
import Hardware
import NN

/// Trains every stage in one process: the numerical reference for the daemon. Each stage is
/// the daemon's `StageMachine`, its messages handed over in memory (`InMemoryPipeline`), fed
/// the daemon's `FeedPlan` — so `train` and `launch` run the same step.
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
  var pipeline: InMemoryPipeline

  public init(config: RunConfig, train: Dataset, test: Dataset) throws(ConfigError) {
    self.config = config
    self.train = train
    self.test = test
    stages = try config.buildStages(sampleShape: train.sampleShape, classes: train.classes)
    handoffs = config.handoffs(stages)
    augmentation = config.augmentation
    order = BatchOrder(
      count: train.count, batchSize: config.training.batchSize, shuffle: true, seed: config.seed)
    // Nothing here waits on a peer: one batch is in the pipeline at a time.
    let batchesPerEpoch = order.batchesPerEpoch
    let machines = stages.map {
      StageMachine<InMemoryPipeline.Carried>(
        stage: $0, config: config, batchesPerEpoch: batchesPerEpoch, maxInFlight: 1, clock: { 0 })
    }
    pipeline = InMemoryPipeline(machines: machines, handoffs: handoffs)
  }

  /// Optimizer steps taken so far (the learning-rate schedule's clock; under `sequential`,
  /// the stage that trains).
  public var step: Int { pipeline.machines.map(\.step).max() ?? 0 }

  public var learningRate: Float {
    config.learningRate(step: step, stepsPerEpoch: order.batchesPerEpoch)
  }

  /// One optimizer step on one batch; returns each trained stage's loss (one loss for e2e)
  /// and the correct count of the last trained stage's head. With `activeStage` (the
  /// `sequential` schedule) only that stage trains.
  @discardableResult
  public func trainStep(_ batch: Batch, activeStage: Int? = nil) -> (losses: [Float], correct: Int)
  {
    pipeline.feed(batch, training: true, activeStage: activeStage)
    return (pipeline.losses.sorted { $0.key < $1.key }.map(\.value), pipeline.correct)
  }

  /// Trains one epoch; `progress(done, total, loss)` is called after every batch. With
  /// `activeStage`, only that stage trains (the `sequential` schedule).
  public func trainEpoch(
    _ epoch: Int, activeStage: Int? = nil, progress: ((Int, Int, Float) -> Void)? = nil
  ) -> EpochReport {
    var plan = FeedPlan(
      trainOrder: order, evalOrder: evalOrder, epochs: epoch + 1,
      microBatches: config.method.splitsBatches ? config.daemon.microBatches : 1, startEpoch: epoch)
    let start = ContinuousClock.now
    let lr = learningRate
    var ledger = EpochLedger(stageCount: stages.count, startMicros: 0)
    var batchesDone = 0
    while let item = plan.peek {
      plan.advance()
      switch item {
      case .train(_, let indices, let micro, let parts, let batchSize):
        let batch = train.trainingBatch(indices, epoch: epoch, augmentation: augmentation).batch
        let share = parts > 1 ? Float(indices.count) / Float(batchSize) : nil
        pipeline.feed(
          batch, training: true, microIndex: micro, microCount: parts, share: share,
          activeStage: activeStage)
        if micro == parts - 1 {
          batchesDone += 1
          progress?(
            batchesDone, order.batchesPerEpoch, pipeline.losses.max { $0.key < $1.key }?.value ?? 0)
        }
      case .eval(_, let indices): pipeline.feed(test.batch(indices), training: false)
      case .marker(let epoch, let kind, let done):
        pipeline.feed(Marker(kind, epoch: epoch, batchesDone: done))
      }
      for totals in pipeline.takeReports() { ledger.add(totals) }
      for marker in pipeline.takeMarkers() {
        if marker.kind == .trainEnd {
          ledger.trainEndMicros = Int64((ContinuousClock.now - start).seconds * 1e6)
        }
        if marker.kind == .evalEnd { ledger.evalEndSeen = true }
      }
    }
    var report = ledger.report(epoch: epoch, steps: step, learningRate: lr)
    report.activeStage = activeStage
    return report
  }

  var evalOrder: BatchOrder {
    BatchOrder(count: test.count, batchSize: config.training.evalBatchSize, shuffle: false, seed: 0)
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
  public func restartSchedule() {
    for k in pipeline.machines.indices { pipeline.machines[k].restartSchedule() }
  }

  /// Accuracy and loss of every stage's head on the test set (accuracy by depth): stages
  /// without a head (kernel hidden stages) are skipped, and e2e reports only the last.
  public func evaluate() -> EvalReport {
    for indices in evalOrder.batches(epoch: 0) {
      pipeline.feed(test.batch(indices), training: false)
    }
    pipeline.feed(Marker(.evalEnd, epoch: 0))
    _ = pipeline.takeMarkers()
    return EvalReport(scoring: pipeline.takeReports())
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
