import Datasets

/// What the scheduler sends into stage 1, in order: each epoch's training batches (with a
/// checkpoint marker after every `checkpointEvery` of them), a train-end marker, the
/// evaluation batches, an eval-end marker. A pure sequence; credits are applied by the caller.
public struct FeedPlan: Sendable {
  public enum Item: Equatable, Sendable {
    /// A training batch, or micro-batch `micro` of `of` of a batch of `batchSize` samples
    /// when batches are split (GPipe; 0 means the indices are the whole batch).
    case train(
      epoch: Int, indices: ArraySlice<Int>, micro: Int = 0, of: Int = 1, batchSize: Int = 0)
    case eval(epoch: Int, indices: ArraySlice<Int>)
    /// A marker; a checkpoint marker says how many of the epoch's training batches are in
    /// front of it.
    case marker(epoch: Int, Marker.Kind, batchesDone: Int = 0)

    public var isBatch: Bool {
      switch self {
      case .train, .eval: true
      case .marker: false
      }
    }
  }

  public let trainOrder: BatchOrder
  public let evalOrder: BatchOrder
  public let epochs: Int
  public let microBatches: Int
  /// The `sequential` schedule runs `epochs` in phases of this many, one per stage; each
  /// phase shuffles like epochs 0, 1, … again (as the trainer does).
  public let epochsPerPhase: Int
  /// Training batches between mid-epoch checkpoints (0: at the epoch's end only).
  public let checkpointEvery: Int
  private var epoch = 0
  private var items: [Item] = []
  private var position = 0

  public init(
    trainOrder: BatchOrder, evalOrder: BatchOrder, epochs: Int, microBatches: Int = 1,
    epochsPerPhase: Int? = nil,
    startEpoch: Int = 0, startBatch: Int = 0, checkpointEvery: Int = 0
  ) {
    (self.trainOrder, self.evalOrder, self.epochs, self.microBatches) = (
      trainOrder, evalOrder, epochs, microBatches
    )
    self.epochsPerPhase = epochsPerPhase ?? epochs
    self.checkpointEvery = checkpointEvery
    epoch = startEpoch
    items = epoch < epochs ? plan(epoch, skipping: startBatch) : []
  }

  /// Epoch `epoch`, its first `skipping` training batches left out (resuming mid-epoch).
  private func plan(_ epoch: Int, skipping: Int = 0) -> [Item] {
    let batches = trainOrder.batches(epoch: epoch % epochsPerPhase)
    return batches.enumerated().dropFirst(skipping).flatMap { index, batch in
      // Micro-batch sizes differ by at most one sample.
      let parts = min(microBatches, batch.count)
      let micro = (0..<parts).map { i -> Item in
        let from = batch.startIndex + i * batch.count / parts
        let to = batch.startIndex + (i + 1) * batch.count / parts
        return .train(
          epoch: epoch, indices: batch[from..<to], micro: i, of: parts,
          batchSize: parts > 1 ? batch.count : 0)
      }
      let done = index + 1
      let checkpoint = checkpointEvery > 0 && done % checkpointEvery == 0 && done < batches.count
      return micro + (checkpoint ? [.marker(epoch: epoch, .checkpoint, batchesDone: done)] : [])
    } + [.marker(epoch: epoch, .trainEnd)]
      + evalOrder.batches(epoch: 0).map { .eval(epoch: epoch, indices: $0) } + [
        .marker(epoch: epoch, .evalEnd)
      ]
  }

  /// The stage that trains in `epoch` under the `sequential` schedule (nil: every stage).
  public func activeStage(epoch: Int) -> Int? {
    epochsPerPhase < epochs ? epoch / epochsPerPhase : nil
  }

  /// The next item, without taking it.
  public var peek: Item? { position < items.count ? items[position] : nil }

  /// Takes the item `peek` showed.
  public mutating func advance() {
    position += 1
    if position == items.count, epoch + 1 < epochs {
      epoch += 1
      items = plan(epoch)
      position = 0
    }
  }
}
