import NN

/// What a stage's replicas share to keep one set of weights: every value of its store
/// (parameters and the state beside them, BatchNorm's statistics included), then each of its
/// optimizer's state buffers (momentum; Adam's moments), flat, in one fixed order. Replicas add
/// up each other's changes to the store's values; the optimizer's buffers stay each replica's
/// own between markers (a momentum that took in a peer's change would move the weights along
/// that peer's gradients a second time) and are averaged at markers.
extension Stage {
  /// The optimizer's state buffers replicas share, by name (see `Optimizer.step`).
  var averagedSlots: [String] {
    switch optimizer.settings.kind {
    case .sgd: optimizer.settings.momentum == 0 ? [] : ["momentum"]
    case .adam, .adamw: ["adam.m", "adam.v"]
    }
  }

  /// The values replicas share: the store's `count` values, then each slot's `count`.
  public var averagedLength: Int { store.count * (1 + averagedSlots.count) }

  /// The leading values of `averagedState` whose changes replicas add up: the store's.
  public var summedLength: Int { store.count }

  /// A copy of what replicas share, `[averagedLength]`.
  public var averagedState: [Float] {
    var state = store.valueArray
    state.reserveCapacity(averagedLength)
    for name in averagedSlots { state += store.slot(name).prefix(store.count) }
    return state
  }

  /// Replaces what replicas share with `state` (`averagedLength` values).
  public func setAveragedState(_ state: [Float]) {
    precondition(state.count == averagedLength, "Stage.setAveragedState: \(state.count) values")
    let n = store.count
    store.setValues(Array(state[0..<n]))
    for (b, name) in averagedSlots.enumerated() {
      _ = store.slot(name).update(fromContentsOf: state[((b + 1) * n)..<((b + 2) * n)])
    }
  }

  /// values ← values + delta, over the store's values (`summedLength` of them).
  public func add(_ delta: [Float]) {
    precondition(delta.count == summedLength, "Stage.add: \(delta.count) values")
    let values = store.values
    for i in 0..<summedLength { values[i] += delta[i] }
  }
}

/// The state every replica takes at a marker, from the last one's `base` and each replica's
/// change since (in replica order): the first `summed` values are the base plus every change
/// (each sample's update counts once), the rest — the optimizer's buffers — the base plus the
/// mean change, i.e. the replicas' mean.
public func roundState(base: [Float], changes: [[Float]], summed: Int) -> [Float] {
  var total = sum(base, changes)
  let n = Float(max(1, changes.count))
  for i in summed..<total.count { total[i] = base[i] + (total[i] - base[i]) / n }
  return total
}

/// `base` + Σ `deltas`, in the order given: every replica that sums in replica order gets the
/// same bits.
public func sum(_ base: [Float], _ deltas: [[Float]]) -> [Float] {
  var total = base
  for delta in deltas {
    precondition(delta.count == total.count, "sum: vectors of unequal length")
    for i in total.indices { total[i] += delta[i] }
  }
  return total
}

/// a − b, elementwise.
func difference(_ a: [Float], _ b: [Float]) -> [Float] {
  precondition(a.count == b.count, "difference: vectors of unequal length")
  return zip(a, b).map { $0 - $1 }
}
