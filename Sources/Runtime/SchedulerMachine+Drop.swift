import Learning
import Wire

/// A dead replica left out while the job goes on, with no cut and no reset: when a replica
/// dies mid-job and its stage has another, every worker hears DROP. Its senders (the feed, or
/// the previous stage's replicas) send what it had not acknowledged to its live peers and
/// say what it had acknowledged, which is credited to its stage's open epochs in place of the
/// totals it never sent; the next stage stops waiting for its markers; its peers leave it out
/// of their sums. Nothing is trained again and the accounting stays exact; the figures
/// (losses, accuracies) of the epoch it died in leave out what it had done since its last
/// totals. Its slot stays empty until the next cut, which removes it.
extension SchedulerMachine {
  /// Whether the worker in `slot` can be left out while the job goes on: the job runs, no
  /// cut is pending, no other dead replica's credit is still awaited, and its stage has
  /// another replica.
  func canGoOnWithout(_ slot: Int) -> Bool {
    guard phase == .running, !draining, changes == nil, !run.owesCredits,
      registry.members[slot] != nil
    else { return false }
    return heldSlots(ofStage: layout.place(ofSlot: slot).stage).contains { $0 != slot }
  }

  /// The slots of stage `k` a worker holds (a dead replica's is empty until the next cut).
  func heldSlots(ofStage k: Int) -> [Int] {
    layout.slots(ofStage: k).filter { registry.members[$0] != nil }
  }

  mutating func goOnWithout(_ slot: Int, _ failure: WorkerFailure) -> [Action] {
    let member = registry.members[slot]!
    let (place, name) = (layout.place(ofSlot: slot), layout.name(ofSlot: slot))
    departed.append(member)
    registry.drop(slot)
    let senders = place.stage == 0 ? 1 : heldSlots(ofStage: place.stage - 1).count
    let landed = run.drop(slot: slot, senders: senders, atMicros: now)
    recoveries.append(
      Recovery(
        stage: place.stage, reason: failure.reason, detectedAfterSeconds: failure.silentSeconds,
        recoverySeconds: 0, resumedAfterEpoch: epochsCompleted, batchesRetrained: 0,
        batchesInFlight: run.inFlight, rolledBack: false))
    let dead = "\(name) was declared dead (\(failure.reason)) and left out of the job"
    let body = DropBody(stage: place.stage, replica: place.replica, reason: failure.reason)
    let live = heldSlots(ofStage: place.stage).count
    let line =
      "\(failure); the job goes on with \(live) replica\(live == 1 ? "" : "s") of stage "
      + "\(place.stage), nothing trained again"
    for marker in landed { landedForChanges(marker) }
    return [
      send(Message(kind: .error, body: ErrorBody(message: dead)), toIdentity: member.identity)
    ]
      + [.log(line)] + sendAll(Message(kind: .drop, body: body))
      + (place.stage == 0 ? [.dropFeedReplica(place.replica)] : [])
      + [.manifest(state: "running", detail: line)] + closeEpochs()
  }

  /// A sender's count of what a dead replica had handed on.
  mutating func takeCredit(_ credit: ReplicaCredit) -> [Action] {
    run.credit(credit)
    let batches = credit.entries.filter { !$0.isEval }.reduce(0) { $0 + $1.count.batches }
    let line =
      "stage \(credit.stage) replica \(credit.replica) had handed on \(batches) training "
      + "batches (by a sender's count)"
    return [.log(line)] + closeEpochs()
  }

  /// Before a rollback: the slots of replicas left out are removed (the replica counts
  /// shrink), so that no registration waits for them.
  mutating func forgetDropped() {
    guard !run.dropped.isEmpty else { return }
    registry = registry.relaid(leaving: [], joining: [], dropped: run.dropped)
    for k in layout.counts.indices { config.stages[k].replicas = layout.counts[k] }
  }
}
