/// Which replica of the next stage takes a batch: the one expected to finish it first — its
/// batches not yet acknowledged, plus this one, times its measured time per batch (SWARM's
/// wiring by throughput, Ryabinin et al. 2023). A replica not measured yet counts as
/// instant, so every one is tried. The router also keeps every batch it routed until its
/// replica acknowledges it: when that replica dies, `drop` hands them back to be sent to
/// another, and `tally` says what the dead one had handed on. Pure: time comes in as an
/// argument.
public struct ReplicaRouter: Sendable, Equatable {
  /// A routed batch, kept until its replica acknowledges it.
  public struct Sent: Sendable, Equatable {
    public var epoch: Int
    public var isEval: Bool
    public var samples: Int
    /// The encoded message, to send again.
    public var frames: [[UInt8]]
    public init(epoch: Int, isEval: Bool, samples: Int, frames: [[UInt8]] = []) {
      (self.epoch, self.isEval, self.samples, self.frames) = (epoch, isEval, samples, frames)
    }
  }

  struct Outstanding: Sendable, Equatable {
    var micros: Int64
    var batch: Sent
  }

  struct Lane: Sendable, Equatable {
    /// Sent and not yet acknowledged: sequence → when it was sent, and the batch.
    var outstanding: [UInt64: Outstanding] = [:]
    /// Moving average of the time between a batch's start there and its acknowledgement.
    var serviceMicros: Double?
    var lastAckMicros: Int64 = .min
    var taken = 0
    /// What it acknowledged, per epoch and phase.
    var tally: [ReplicaCredit.Key: ReplicaCredit.Count] = [:]
    var dropped = false
  }

  /// A batch taken back from a dead replica, to be sent again.
  public struct Returned: Sendable, Equatable {
    public var sequence: UInt64
    public var batch: Sent
  }

  private(set) var lanes: [Lane]
  /// Batches taken back from dead replicas, oldest first, not yet sent again (`resend`).
  public private(set) var returned: [Returned] = []

  public init(replicas: Int) { lanes = Array(repeating: Lane(), count: replicas) }

  public var replicas: Int { lanes.count }

  /// The replicas still alive.
  public var live: [Int] { lanes.indices.filter { !lanes[$0].dropped } }

  public func isDropped(_ replica: Int) -> Bool {
    lanes.indices.contains(replica) && lanes[replica].dropped
  }

  /// Nothing routed waits for an acknowledgement (a marker may go on: whatever a replica
  /// that dies now held would be sent again after it).
  public var isDrained: Bool {
    returned.isEmpty && lanes.allSatisfy { $0.dropped || $0.outstanding.isEmpty }
  }

  /// The live replica expected to finish a new batch first (ties: fewer waiting, then the
  /// lower).
  public func choose() -> Int {
    func finish(_ r: Int) -> Double {
      Double(lanes[r].outstanding.count + 1) * (lanes[r].serviceMicros ?? 0)
    }
    return live.min { a, b in
      (finish(a), lanes[a].outstanding.count, a) < (finish(b), lanes[b].outstanding.count, b)
    } ?? 0
  }

  public mutating func sent(
    _ sequence: UInt64, to replica: Int, atMicros now: Int64,
    batch: Sent = Sent(epoch: 0, isEval: false, samples: 0)
  ) {
    lanes[replica].outstanding[sequence] = Outstanding(micros: now, batch: batch)
  }

  /// Replica `replica` acknowledged `sequence`; false when it was not waiting there (a stale
  /// or forged ACK, which changes nothing).
  @discardableResult
  public mutating func acknowledged(_ sequence: UInt64, by replica: Int, atMicros now: Int64)
    -> Bool
  {
    guard lanes.indices.contains(replica), !lanes[replica].dropped,
      let sent = lanes[replica].outstanding.removeValue(forKey: sequence)
    else { return false }
    let (sentAt, batch) = (sent.micros, sent.batch)
    // The batch started there when it was sent or when the one before it was done.
    let service = Double(now - max(sentAt, lanes[replica].lastAckMicros))
    let previous = lanes[replica].serviceMicros
    lanes[replica].serviceMicros = previous.map { 0.8 * $0 + 0.2 * service } ?? service
    lanes[replica].lastAckMicros = now
    lanes[replica].taken += 1
    let key = ReplicaCredit.Key(epoch: batch.epoch, isEval: batch.isEval)
    lanes[replica].tally[key, default: .init()].add(samples: batch.samples)
    return true
  }

  /// Replica `replica` died: it is never chosen again, and what it had not acknowledged is
  /// taken back, to be sent to another (`resend`); returns how many.
  @discardableResult
  public mutating func drop(_ replica: Int) -> Int {
    guard lanes.indices.contains(replica), !lanes[replica].dropped else { return 0 }
    lanes[replica].dropped = true
    let back = lanes[replica].outstanding.sorted { $0.key < $1.key }
    lanes[replica].outstanding = [:]
    returned += back.map { Returned(sequence: $0.key, batch: $0.value.batch) }
    returned.sort { $0.sequence < $1.sequence }
    return back.count
  }

  /// Sends the batches taken back, oldest first, each to the live replica chosen for it,
  /// while `send` takes them (false: that socket is full, try again later).
  public mutating func resend(atMicros now: Int64, _ send: (Int, Sent) throws -> Bool) rethrows {
    while let next = returned.first, !live.isEmpty {
      let replica = choose()
      guard try send(replica, next.batch) else { return }
      returned.removeFirst()
      sent(next.sequence, to: replica, atMicros: now, batch: next.batch)
    }
  }

  /// What replica `replica` acknowledged, per epoch and phase.
  public func tally(of replica: Int) -> [ReplicaCredit.Entry] {
    lanes[replica].tally.sorted {
      ($0.key.epoch, $0.key.isEval ? 1 : 0) < ($1.key.epoch, $1.key.isEval ? 1 : 0)
    }
    .map { ReplicaCredit.Entry(epoch: $0.key.epoch, isEval: $0.key.isEval, count: $0.value) }
  }

  /// Batches each replica has acknowledged so far.
  public var taken: [Int] { lanes.map(\.taken) }
  /// Batches each replica holds unacknowledged.
  public var waiting: [Int] { lanes.map(\.outstanding.count) }
}
