/// A stage run by several replicas, each a stage machine of its own, that keep one set of
/// weights by adding up each other's updates (as Downpour SGD's workers push theirs, Dean et
/// al. 2012, here without a parameter server): every `averageEvery` own steps a replica sends
/// what its own steps changed in the weights since its last send, and each peer adds that in;
/// at a marker that saves, every replica sends everything its own steps changed since the last
/// such marker and all take the same state — the last marker's weights plus every replica's
/// change, added in replica order, and the mean of their optimizer buffers (`roundState`) — so
/// what is checkpointed and evaluated is one set of weights, and every sample's update counts
/// once, as in one process. (Markers from several senders are lined up before
/// they reach the machine: `MarkerAlignment`.) With one replica none of this happens.
extension StageMachine {
  /// A stage machine's place among its stage's replicas.
  public struct ReplicaPlace: Sendable, Equatable {
    public var index = 0
    public var count = 1
    /// Own steps between sends of the change (0: only at markers).
    public var averageEvery = 0
    public init(index: Int = 0, count: Int = 1, averageEvery: Int = 0) {
      (self.index, self.count, self.averageEvery) = (index, count, averageEvery)
    }
  }

  /// What a replica's own steps changed, on its way to its peers: `round` is the marker it was
  /// taken at (everything since the last such marker; all replicas then take the sum), nil
  /// for a periodic send (what changed since the last send; each peer adds it in).
  public struct ReplicaState {
    public var values: [Float]
    /// Own training steps since the last marker's sum (the schedule's clock adds them up).
    public var steps: Int
    public var round: Marker?
    public init(values: [Float], steps: Int, round: Marker?) {
      (self.values, self.steps, self.round) = (values, steps, round)
    }
  }

  /// What a machine keeps about its replicas between events.
  struct ReplicaBook {
    var place: ReplicaPlace
    /// Peers' changes for a marker this replica has not reached yet.
    var early: [MarkerKey: [Int: ReplicaState]] = [:]
    /// The schedule's clock at the last sum, and own steps since.
    var base: Int
    var ownSteps = 0
    /// The state at the last sum (the same on every replica), what own steps changed since
    /// then, and the state just after the last own send or peer change taken in (so that what
    /// changed since is this replica's own). Empty until first needed.
    var sumBase: [Float] = []
    var ownChange: [Float] = []
    var mark: [Float] = []
    /// Peers that died: no round waits for them.
    var dropped: Set<Int> = []

    /// Replicas alive, this one included.
    var liveCount: Int { place.count - dropped.count }

    /// Every live replica's change for a round is in.
    func isComplete(_ states: [Int: ReplicaState]) -> Bool {
      (0..<place.count).allSatisfy { states[$0] != nil || dropped.contains($0) }
    }
  }

  /// A marker as a dictionary key.
  struct MarkerKey: Hashable {
    var kind: Marker.Kind
    var epoch: Int
    var batchesDone: Int
    init(_ m: Marker) { (kind, epoch, batchesDone) = (m.kind, m.epoch, m.batchesDone) }
  }

  public var replicaPlace: ReplicaPlace { replicas.place }
  /// Peers that died while the job went on.
  public var droppedPeers: Set<Int> { replicas.dropped }

  /// The book's vectors, from the state the replicas share at the start (built alike, or
  /// restored from the same checkpoint).
  mutating func openBook() {
    guard replicas.sumBase.isEmpty else { return }
    replicas.sumBase = stage.averagedState
    replicas.mark = replicas.sumBase
    replicas.ownChange = [Float](repeating: 0, count: replicas.sumBase.count)
  }

  /// What own steps changed since the last mark, added to `ownChange`; the mark moves to now.
  mutating func takeOwnChange() -> [Float] {
    openBook()
    let now = stage.averagedState
    let change = difference(now, replicas.mark)
    replicas.ownChange = sum(replicas.ownChange, [change])
    replicas.mark = now
    return change
  }

  /// One own optimizer step taken: the schedule's clock moves by the stage's replica count (its
  /// steps are the stage's share), and a periodic send falls due.
  mutating func stepped() -> [Action] {
    replicas.ownSteps += 1
    step += replicas.liveCount
    let every = replicas.place.averageEvery
    guard replicas.place.count > 1, every > 0, replicas.ownSteps % every == 0 else { return [] }
    let values = Array(takeOwnChange().prefix(stage.summedLength))
    return [.send(.state(ReplicaState(values: values, steps: replicas.ownSteps, round: nil)))]
  }

  /// At a marker that saves, with peers: send everything own steps changed since the last sum,
  /// and wait for theirs.
  mutating func beginRound(_ marker: Marker, _ envelope: Envelope) -> [Action] {
    _ = takeOwnChange()
    let own = ReplicaState(values: replicas.ownChange, steps: replicas.ownSteps, round: marker)
    var states = replicas.early.removeValue(forKey: MarkerKey(marker)) ?? [:]
    states[replicas.place.index] = own
    state = .averaging(marker, envelope, states: states, sinceMicros: clock())
    return [.send(.state(own))] + (replicas.isComplete(states) ? endRound() : [])
  }

  /// A peer's change: added in at once (periodic), kept for the round it belongs to. A
  /// periodic change that comes during a round is in that peer's round total already.
  mutating func takePeerState(_ peer: ReplicaState, from replica: Int) -> [Action] {
    guard !replicas.dropped.contains(replica) else { return [] }  // late, from the dead
    guard let round = peer.round else {
      guard case .training = state, peer.values.count == stage.summedLength else { return [] }
      openBook()
      stage.add(peer.values)
      for i in peer.values.indices { replicas.mark[i] += peer.values[i] }
      return []
    }
    if case .averaging(let marker, let envelope, var states, let since) = state,
      MarkerKey(marker) == MarkerKey(round)
    {
      states[replica] = peer
      state = .averaging(marker, envelope, states: states, sinceMicros: since)
      return replicas.isComplete(states) ? endRound() : []
    }
    replicas.early[MarkerKey(round), default: [:]][replica] = peer
    return []
  }

  /// A round that waited past the patience ends with the changes it has.
  mutating func roundOverdue(_ now: Int64) -> [Action] {
    guard case .averaging(_, _, let states, let since) = state, now - since > patienceMicros else {
      return []
    }
    let missing = (0..<replicas.place.count).filter {
      states[$0] == nil && !replicas.dropped.contains($0)
    }
    return [.note("replicas \(missing) sent no change within the patience: summed without them")]
      + endRound()
  }

  /// Peer `replica` died: it is left out of the rounds from now on (what it sent counts), and a
  /// round that waited only for it ends.
  mutating func dropPeer(_ replica: Int) -> [Action] {
    guard replica != replicas.place.index, (0..<replicas.place.count).contains(replica),
      replicas.dropped.insert(replica).inserted
    else { return [] }
    guard case .averaging(_, _, let states, _) = state, replicas.isComplete(states) else {
      return []
    }
    return endRound()
  }

  /// Every replica's change is in: all take the same sum, the clock adds up every replica's
  /// steps, and the marker goes on.
  mutating func endRound() -> [Action] {
    guard case .averaging(let marker, let envelope, let states, let since) = state else {
      return []
    }
    // In replica order, so every replica adds the same way (a peer that never answered is
    // left out; the scheduler replaces it).
    let ordered = states.sorted { $0.key < $1.key }.map(\.value)
    let total = roundState(
      base: replicas.sumBase, changes: ordered.map(\.values), summed: stage.summedLength)
    stage.setAveragedState(total)
    (replicas.sumBase, replicas.mark) = (total, total)
    replicas.ownChange = [Float](repeating: 0, count: total.count)
    replicas.base += ordered.reduce(0) { $0 + $1.steps }
    (replicas.ownSteps, step) = (0, replicas.base)
    state = .training
    return [.span("average", startMicros: since, endMicros: clock())]
      + markerWork(marker, envelope)
  }
}
