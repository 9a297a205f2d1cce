import Telemetry
import Wire

/// A replica of the job died and the job goes on without it (DROP). What this worker does
/// depends on where the dead replica stood: it took this stage's batches (they are sent
/// again to its live peers, and what it had acknowledged goes to the scheduler, which
/// credits its stage with it), it sent batches here (its marker copies are no longer awaited
/// and it gets no more ACKs), or it was a peer (no round waits for it; the lowest live
/// replica writes the stage's checkpoints).
extension Worker {
  func goOnWithout(_ drop: DropBody, _ s: StageSession) throws {
    let (stage, replica) = (s.assignment.stage, drop.replica)
    if drop.stage == stage + 1, s.router != nil {
      try dropReceiver(replica, s)
    } else if drop.stage == stage - 1, s.alignment.senders > 1 {
      s.outbox.remove(to: .acknowledge(replica))
      s.alignment.drop(sender: replica)  // what it releases, the loop takes
      log("stage \(drop.stage) replica \(replica) died: its markers are no longer awaited")
    } else if drop.stage == stage, replica != s.place.index, replica < s.place.count {
      s.outbox.remove(to: .peer(replica))
      try drive(s, .peerDropped(replica))
      log(
        "replica \(replica) of this stage died: the others go on without it"
          + (s.writesCheckpoints ? "; this one writes the checkpoints" : ""))
    }
    try flush(s)
  }

  /// A replica of the next stage died: what it had not acknowledged goes to the others, and
  /// what it had is counted for the scheduler.
  func dropReceiver(_ replica: Int, _ s: StageSession) throws {
    guard s.router?.isDropped(replica) == false else { return }
    s.outbox.remove(to: .downstream(replica))
    let back = s.router!.drop(replica)
    let credit = ReplicaCredit(
      stage: s.assignment.stage + 1, replica: replica, entries: s.router!.tally(of: replica))
    try sendControl(Message(kind: .stats, body: StatsBody(live: nil, totals: nil, credit: credit)))
    try s.router!.resend(atMicros: WallClock.micros()) { r, batch in
      try post(frames: batch.frames, to: .downstream(r), s)
      return true
    }
    log(
      "stage \(s.assignment.stage + 1) replica \(replica) died: \(back) batches it held sent "
        + "again to replicas \(s.router!.live)")
    try releaseGatedMarker(s)
  }
}
