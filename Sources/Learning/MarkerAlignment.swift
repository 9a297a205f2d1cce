/// Markers that come from several senders (the previous stage's replicas), lined up as Flink
/// lines up its barriers: once a sender's copy of a marker has come, what that sender sends
/// next waits until every sender's copy has come — then the marker goes on, once, and what
/// waited is taken in the order it came. So a stage's epoch totals hold exactly that epoch's
/// batches. With one sender everything goes straight through. Pure: the shell puts in what
/// arrives and takes out what to hand to the stage machine.
public struct MarkerAlignment<Item> {
  public let senders: Int
  /// Senders that died (`drop`): their copies are no longer awaited.
  public private(set) var dropped: Set<Int> = []
  /// Senders whose copy of the marker under way has come, and its first copy.
  private var arrived: Set<Int> = []
  private var underWay: Item?
  /// A marker whose last awaited copy was a dead sender's: it goes on next.
  private var completed: Item?
  /// What came from those senders meanwhile, in order.
  private var held: [(sender: Int, item: Item, isMarker: Bool)] = []

  public init(senders: Int) { self.senders = max(1, senders) }

  /// Items waiting for a marker to go on.
  public var heldCount: Int { held.count }

  /// Whether a held item may go now (the marker it waited for has gone on).
  public var canRelease: Bool {
    completed != nil || (!held.isEmpty && !arrived.contains(held[0].sender))
  }

  /// Every live sender's copy of the marker under way has come.
  private var allArrived: Bool {
    (0..<senders).allSatisfy { arrived.contains($0) || dropped.contains($0) }
  }

  /// An item from `sender`: what to hand on now (nil: it waits, or it is a marker copy whose
  /// siblings are still to come).
  public mutating func take(_ item: Item, from sender: Int, isMarker: Bool) -> Item? {
    guard senders > 1 else { return item }
    if arrived.contains(sender) {
      held.append((sender, item, isMarker))
      return nil
    }
    guard isMarker else { return item }
    guard !dropped.contains(sender) else { return nil }  // a dead sender's late copy
    arrived.insert(sender)
    underWay = underWay ?? item
    guard allArrived else { return nil }
    (arrived, underWay) = ([], nil)
    return item
  }

  /// Sender `sender` died: its copies are no longer awaited; a marker that waited only for
  /// it goes on at the next `release`.
  public mutating func drop(sender: Int) {
    guard senders > 1, (0..<senders).contains(sender), dropped.insert(sender).inserted else {
      return
    }
    guard let marker = underWay, allArrived else { return }
    (arrived, underWay, completed) = ([], nil, marker)
  }

  /// The next held item, through `take` again (it may be the next marker's copy).
  public mutating func release() -> Item? {
    if let marker = completed {
      completed = nil
      return marker
    }
    guard canRelease else { return nil }
    let next = held.removeFirst()
    return take(next.item, from: next.sender, isMarker: next.isMarker)
  }
}
