import NN

/// What a stage's replicas share to keep one set of weights: every value of its store
/// (parameters and the state beside them, BatchNorm's statistics included), then each of its
/// optimizer's state buffers (momentum; Adam's moments), flat, in one fixed order.
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

  /// state ← state + delta, over `averagedState`'s values (`averagedLength` of them).
  public func add(_ delta: [Float]) {
    precondition(delta.count == averagedLength, "Stage.add: \(delta.count) values")
    let n = store.count
    let buffers = [store.values] + averagedSlots.map { store.slot($0) }
    for (b, buffer) in buffers.enumerated() {
      for i in 0..<n { buffer[i] += delta[b * n + i] }
    }
  }
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
