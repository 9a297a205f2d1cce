/// Which replica of the next stage takes a batch: the one expected to finish it first — its
/// batches not yet acknowledged, plus this one, times its measured time per batch (SWARM's
/// wiring by throughput, Ryabinin et al. 2023). A replica not measured yet counts as
/// instant, so every one is tried. Pure: time comes in as an argument.
public struct ReplicaRouter: Sendable, Equatable {
  struct Lane: Sendable, Equatable {
    /// Sent and not yet acknowledged: sequence → when it was sent.
    var outstanding: [UInt64: Int64] = [:]
    /// Moving average of the time between a batch's start there and its acknowledgement.
    var serviceMicros: Double?
    var lastAckMicros: Int64 = .min
    var taken = 0
  }

  private(set) var lanes: [Lane]

  public init(replicas: Int) { lanes = Array(repeating: Lane(), count: replicas) }

  public var replicas: Int { lanes.count }

  /// The replica expected to finish a new batch first (ties: fewer waiting, then the lower).
  public func choose() -> Int {
    func finish(_ r: Int) -> Double {
      Double(lanes[r].outstanding.count + 1) * (lanes[r].serviceMicros ?? 0)
    }
    return lanes.indices.min { a, b in
      (finish(a), lanes[a].outstanding.count, a) < (finish(b), lanes[b].outstanding.count, b)
    }!
  }

  public mutating func sent(_ sequence: UInt64, to replica: Int, atMicros now: Int64) {
    lanes[replica].outstanding[sequence] = now
  }

  /// Replica `replica` acknowledged `sequence`; false when it was not waiting there (a stale
  /// or forged ACK, which changes nothing).
  @discardableResult
  public mutating func acknowledged(_ sequence: UInt64, by replica: Int, atMicros now: Int64)
    -> Bool
  {
    guard lanes.indices.contains(replica),
      let sentAt = lanes[replica].outstanding.removeValue(forKey: sequence)
    else { return false }
    // The batch started there when it was sent or when the one before it was done.
    let service = Double(now - max(sentAt, lanes[replica].lastAckMicros))
    let previous = lanes[replica].serviceMicros
    lanes[replica].serviceMicros = previous.map { 0.8 * $0 + 0.2 * service } ?? service
    lanes[replica].lastAckMicros = now
    lanes[replica].taken += 1
    return true
  }

  /// Batches each replica has acknowledged so far.
  public var taken: [Int] { lanes.map(\.taken) }
  /// Batches each replica holds unacknowledged.
  public var waiting: [Int] { lanes.map(\.outstanding.count) }
}
