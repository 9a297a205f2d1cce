import Data
import Wire

/// What the scheduler sends into stage 1, in order: each epoch's training batches, a train-end
/// marker, the evaluation batches, an eval-end marker. A pure sequence; credits are applied by
/// the caller.
public struct FeedPlan: Sendable {
  public enum Item: Equatable, Sendable {
    case train(epoch: Int, indices: ArraySlice<Int>)
    case eval(epoch: Int, indices: ArraySlice<Int>)
    case marker(epoch: Int, MarkerFlag)

    public var isBatch: Bool {
      if case .marker = self { return false }
      return true
    }
  }

  public let trainOrder: BatchOrder
  public let evalOrder: BatchOrder
  public let epochs: Int
  private var epoch = 0
  private var items: [Item] = []
  private var position = 0

  public init(trainOrder: BatchOrder, evalOrder: BatchOrder, epochs: Int, startEpoch: Int = 0) {
    (self.trainOrder, self.evalOrder, self.epochs) = (trainOrder, evalOrder, epochs)
    epoch = startEpoch
    items = epoch < epochs ? plan(epoch) : []
  }

  private func plan(_ epoch: Int) -> [Item] {
    trainOrder.batches(epoch: epoch).map { .train(epoch: epoch, indices: $0) } + [.marker(epoch: epoch, .trainEnd)]
      + evalOrder.batches(epoch: 0).map { .eval(epoch: epoch, indices: $0) } + [.marker(epoch: epoch, .evalEnd)]
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
