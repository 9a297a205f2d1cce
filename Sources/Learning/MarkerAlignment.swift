/// Markers that come from several senders (the previous stage's replicas), lined up as Flink
/// lines up its barriers: once a sender's copy of a marker has come, what that sender sends
/// next waits until every sender's copy has come — then the marker goes on, once, and what
/// waited is taken in the order it came. So a stage's epoch totals hold exactly that epoch's
/// batches. With one sender everything goes straight through. Pure: the shell puts in what
/// arrives and takes out what to hand to the stage machine.
public struct MarkerAlignment<Item> {
  public let senders: Int
  /// Senders whose copy of the marker under way has come.
  private var arrived: Set<Int> = []
  /// What came from those senders meanwhile, in order.
  private var held: [(sender: Int, item: Item, isMarker: Bool)] = []

  public init(senders: Int) { self.senders = max(1, senders) }

  /// Items waiting for a marker to go on.
  public var heldCount: Int { held.count }

  /// Whether a held item may go now (the marker it waited for has gone on).
  public var canRelease: Bool { !held.isEmpty && !arrived.contains(held[0].sender) }

  /// An item from `sender`: what to hand on now (nil: it waits, or it is a marker copy whose
  /// siblings are still to come).
  public mutating func take(_ item: Item, from sender: Int, isMarker: Bool) -> Item? {
    guard senders > 1 else { return item }
    if arrived.contains(sender) {
      held.append((sender, item, isMarker))
      return nil
    }
    guard isMarker else { return item }
    arrived.insert(sender)
    guard arrived.count == senders else { return nil }
    arrived = []
    return item
  }

  /// The next held item, through `take` again (it may be the next marker's copy).
  public mutating func release() -> Item? {
    guard canRelease else { return nil }
    let next = held.removeFirst()
    return take(next.item, from: next.sender, isMarker: next.isMarker)
  }
}
