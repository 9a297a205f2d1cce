/// What a DFA or DNI stage keeps per batch it sent forward until that batch's feedback comes
/// back (DFA: the pass, for the error's backward; DNI: the output h, for the synthesiser's
/// regression), bounded: keeping one more than `capacity` evicts the oldest, and feedback
/// for an evicted batch is stale — counted, never waited for. Pure: no sockets, no clock.
struct FeedbackStore<Entry> {
  struct Held {
    var sequence: UInt64
    var entry: Entry
    /// The stage's optimizer step when the batch went forward (its learning rate).
    var step: Int
    /// How many training batches the stage had sent forward before this one.
    var forwardIndex: Int
  }

  let capacity: Int
  private(set) var held: [Held] = []
  /// Training batches sent forward so far.
  private(set) var forwarded = 0
  /// Sequences evicted before their feedback came (the most recent `capacity` of them), so
  /// that feedback arriving for one is told apart from feedback for a batch never sent.
  private(set) var evicted: [UInt64] = []

  init(capacity: Int) {
    precondition(capacity >= 1, "a feedback store holds at least one batch")
    self.capacity = capacity
  }

  var isEmpty: Bool { held.isEmpty }

  /// Keeps a batch just sent forward; returns how many batches were evicted to make room (0 or 1).
  mutating func keep(_ entry: Entry, sequence: UInt64, step: Int) -> Int {
    held.append(Held(sequence: sequence, entry: entry, step: step, forwardIndex: forwarded))
    forwarded += 1
    guard held.count > capacity else { return 0 }
    evict(held.removeFirst().sequence)
    return 1
  }

  /// Whether feedback for `sequence` may be taken (the batch is held).
  func holds(_ sequence: UInt64) -> Held? { held.first { $0.sequence == sequence } }

  /// Whether `sequence` was evicted before its feedback came.
  func wasEvicted(_ sequence: UInt64) -> Bool { evicted.contains(sequence) }

  /// Takes the batch `sequence` for its feedback; `staleness` is how many batches went forward
  /// after it (0 in lockstep order).
  mutating func take(_ sequence: UInt64) -> (held: Held, staleness: Int)? {
    guard let index = held.firstIndex(where: { $0.sequence == sequence }) else { return nil }
    let taken = held.remove(at: index)
    return (taken, forwarded - taken.forwardIndex - 1)
  }

  /// Gives up on every batch still held (feedback that will not come); returns how many.
  mutating func abandon() -> Int {
    let count = held.count
    for h in held { evict(h.sequence) }
    held = []
    return count
  }

  private mutating func evict(_ sequence: UInt64) {
    evicted.append(sequence)
    if evicted.count > capacity { evicted.removeFirst() }
  }
}
