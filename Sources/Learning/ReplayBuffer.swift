/// DGL's asynchronous replay buffer at one stage boundary: a ring of M entries; a draw takes,
/// among the entries used least, the one written most recently (priority-LIFO) and counts the
/// use. With `maxReuse`, an entry used that often is no longer drawn; when no entry can be
/// drawn the stage stalls (counted). Pure logic: the payload is whatever the caller stores.
public struct ReplayBuffer<Payload> {
  public struct Entry {
    public var payload: Payload
    public var uses: Int
    /// Producer step at which the entry was written (its age is measured in these).
    public var writtenAt: Int
  }

  public let capacity: Int
  public let maxReuse: Int?
  public private(set) var entries: [Entry] = []
  /// Where the next write goes once the ring is full (the oldest entry).
  private var oldest = 0
  public private(set) var stalls = 0
  public private(set) var draws = 0
  /// Σ of draws' ages and uses, for mean staleness.
  public private(set) var ageSum = 0
  public private(set) var maxAge = 0

  public init(capacity: Int, maxReuse: Int? = nil) {
    precondition(capacity >= 1, "ReplayBuffer: capacity must be positive")
    self.capacity = capacity
    self.maxReuse = maxReuse
  }

  /// Writes an entry (already used `uses` times), overwriting the oldest when full.
  public mutating func write(_ payload: Payload, producerStep: Int, uses: Int = 0) {
    let entry = Entry(payload: payload, uses: uses, writtenAt: producerStep)
    if entries.count < capacity {
      entries.append(entry)
    } else {
      entries[oldest] = entry
      oldest = (oldest + 1) % capacity
    }
  }

  /// The index a draw would take: least used, then most recently written; nil when every
  /// entry has reached `maxReuse` (or the buffer is empty).
  public func nextIndex() -> Int? {
    var best: Int?
    for (i, entry) in entries.enumerated() {
      if let maxReuse, entry.uses >= maxReuse { continue }
      guard let b = best else {
        best = i
        continue
      }
      let current = entries[b]
      if entry.uses < current.uses
        || (entry.uses == current.uses && entry.writtenAt > current.writtenAt)
      {
        best = i
      }
    }
    return best
  }

  /// Draws one entry (counting its use and its age at `producerStep`), or nil: a stall, counted
  /// when entries are there but all have reached `maxReuse` (an empty buffer is no stall).
  public mutating func draw(producerStep: Int) -> Entry? {
    guard let index = nextIndex() else {
      if !entries.isEmpty { stalls += 1 }
      return nil
    }
    entries[index].uses += 1
    let age = producerStep - entries[index].writtenAt
    draws += 1
    ageSum += age
    maxAge = max(maxAge, age)
    return entries[index]
  }

  /// Empties the buffer (its statistics stay): replay draws from the current epoch's batches only.
  public mutating func removeAll() {
    entries.removeAll()
    oldest = 0
  }

  /// Staleness so far: draws, mean and largest age in producer steps, mean uses per entry, stalls.
  public var statistics: ReplayStatistics {
    ReplayStatistics(
      draws: draws, stalls: stalls, meanAge: draws > 0 ? Double(ageSum) / Double(draws) : 0,
      maxAge: maxAge,
      meanUses: entries.isEmpty
        ? 0 : Double(entries.reduce(0) { $0 + $1.uses }) / Double(entries.count))
  }
}

/// A replay buffer's staleness figures, as reported in `run.json` and the metrics.
public struct ReplayStatistics: Codable, Sendable, Equatable {
  public var draws: Int
  public var stalls: Int
  public var meanAge: Double
  public var maxAge: Int
  public var meanUses: Double
}
