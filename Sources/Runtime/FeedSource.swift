import Datasets
import Learning
import Wire

/// What the scheduler feeds into stage 0, as messages: training batches (moved by
/// `data.augment`), evaluation batches and markers, with what stage 0's handoff needs.
struct FeedSource {
  let train: Dataset
  let test: Dataset
  /// What travels into each stage besides its input (stage 0's from the feed).
  let handoffs: [Handoff]
  let augmentation: Augmentation?

  init(config: RunConfig, train: Dataset, test: Dataset) throws {
    (self.train, self.test) = (train, test)
    // Check every stage's shapes here, before any process is asked to build one.
    let blueprints = try config.blueprints(sampleShape: train.sampleShape, classes: train.classes)
    handoffs = config.handoffs(inputShapes: blueprints.map(\.body.inputShape))
    augmentation = config.augmentation
  }

  /// The encoded message for `item` of `run`'s plan.
  func frames(for item: FeedPlan.Item, of run: JobRun) -> [[UInt8]] {
    var message: Message
    switch item {
    case .train(let epoch, let indices, let micro, let parts, let batchSize):
      let phaseEpoch = epoch % run.plan.epochsPerPhase
      let batch = train.trainingBatch(indices, epoch: phaseEpoch, augmentation: augmentation)
      message = Message(
        kind: .train, tensors: StageHandoff.feed(batch.0, raw: batch.1(), into: handoffs[0]))
      message.epoch = UInt32(epoch)
      message.flags = TrainFlags.flags(activeStage: run.plan.activeStage(epoch: epoch))
      if parts > 1 {
        // A micro-batch's share of its batch scales its loss gradient on the last stage.
        let share = Float(indices.count) / Float(batchSize)
        message.tensors.append(WireTensor(role: .share, shape: [1], floats: [share]))
        (message.microIndex, message.microCount) = (UInt16(micro), UInt16(parts))
      }
    case .eval(let epoch, let indices):
      let tensors = StageHandoff.feed(
        test.batch(indices), raw: test.rawBatch(indices), into: handoffs[0])
      message = Message(kind: .eval, tensors: tensors)
      message.epoch = UInt32(epoch)
    case .marker(let epoch, let kind, let batchesDone):
      message = Message(kind: .marker)
      message.flags = kind.flag.rawValue
      message.epoch = UInt32(epoch)
      message.step = UInt64(batchesDone)
    }
    message.job = run.id
    message.sequence = run.sequence
    return message.encode()
  }
}
