import NN

/// The order in which one epoch visits a data set: a seeded shuffle per epoch, cut into
/// batches of `batchSize`, the last one partial unless `dropLast`.
public struct BatchOrder: Sendable {
  public let count: Int
  public let batchSize: Int
  public let shuffle: Bool
  public let dropLast: Bool
  public let seed: UInt64

  public init(count: Int, batchSize: Int, shuffle: Bool, dropLast: Bool = false, seed: UInt64) {
    precondition(batchSize > 0, "BatchOrder: batch size must be positive")
    (self.count, self.batchSize, self.shuffle, self.dropLast, self.seed) =
      (count, batchSize, shuffle, dropLast, seed)
  }

  public var batchesPerEpoch: Int {
    dropLast ? count / batchSize : (count + batchSize - 1) / batchSize
  }

  /// The index batches of `epoch`; the same seed and epoch give the same order.
  public func batches(epoch: Int) -> [ArraySlice<Int>] {
    var order = Array(0..<count)
    if shuffle {
      var rng = SeededGenerator(seed: seed, stream: 0x5348_5546 &+ UInt64(epoch))
      // Fisher–Yates with our own generator: the stdlib's shuffle algorithm may change.
      for i in stride(from: count - 1, to: 0, by: -1) {
        let j = Int(rng.next() % UInt64(i + 1))
        order.swapAt(i, j)
      }
    }
    return (0..<batchesPerEpoch).map { b in
      order[(b * batchSize)..<min((b + 1) * batchSize, count)]
    }
  }
}
