import Learning
import Telemetry
import Wire

/// Replicas that join and leave a running job, at a cut. A worker that says HELLO while the job
/// runs joins as one more replica of a stage: the one it asks for (`--stage K`), else the one
/// with the least capacity (samples/s over busy, summed over its replicas: the bottleneck). A
/// replica sent SIGTERM asks to LEAVE. Either way the feed goes on up to the next cut — a
/// checkpoint marker, or the end of an epoch's evaluation — and stops there; once everything in
/// front of the cut has landed (and that epoch is reported), the leavers are stopped, every
/// other worker is reset, and the job restarts from that cut under a new id with the new
/// replica counts. Every replica, a joiner too, gets the stage's weights and optimizer state
/// from the cut's checkpoint, and nothing is trained again. A worker lost meanwhile turns the
/// joiners into its replacements and the leaves into nothing (everyone is reset anyway).
extension SchedulerMachine {
  /// What changes at the next cut, and where the feed stopped for it.
  struct CutChanges: Sendable {
    var joins: [(stage: Int, member: Registry.Member)] = []
    /// The workers that asked to leave, by identity.
    var leaves: [[UInt8]] = []
    /// The cut the feed stopped after: its marker's sequence and epoch, and whether it ends
    /// the epoch (then the epoch's report comes first). Nil until the feed reaches one.
    var heldAt: (sequence: UInt64, epoch: Int, epochEnd: Bool)?
    /// Every copy of that marker reached the sink.
    var landed = false
  }

  /// Replicas per stage once `changes` are made.
  func counts(after changes: CutChanges?) -> [Int] {
    var counts = layout.counts
    for slot in run.dropped { counts[layout.place(ofSlot: slot).stage] -= 1 }
    for join in changes?.joins ?? [] { counts[join.stage] += 1 }
    for leaver in changes?.leaves ?? [] {
      if let slot = registry.slot(of: leaver) { counts[layout.place(ofSlot: slot).stage] -= 1 }
    }
    return counts
  }

  /// HELLO while running: the worker waits for the next cut, or is told why it cannot join.
  mutating func askToJoin(_ hello: Hello, identity: [UInt8]) -> Result<[Action], RuntimeError> {
    guard phase == .running, !draining else {
      return .failure(RuntimeError("job \(run.id) is stopping; it takes no more workers"))
    }
    guard changes?.joins.contains(where: { $0.member.identity == identity }) != true else {
      return .success([])  // already waiting
    }
    let (stage, why) = hello.requestedStage.map { ($0, "asked for") } ?? neediestStage()
    guard (0..<stageCount).contains(stage) else {
      return .failure(
        RuntimeError("stage \(stage) does not exist: this job has stages 0…\(stageCount - 1)"))
    }
    var wider = config
    wider.stages[stage].replicas = counts(after: changes)[stage] + 1
    do throws(ConfigError) { try wider.validate() } catch {
      return .failure(RuntimeError("stage \(stage) cannot take another replica: \(error)"))
    }
    changes = changes ?? CutChanges()
    changes!.joins.append(
      (stage, Registry.Member(identity: identity, hello: hello, lastHeardMicros: now)))
    let line =
      "\(hello.host) pid \(hello.pid) joins stage \(stage) as replica "
      + "\(counts(after: changes)[stage] - 1) (\(why)) at the next cut"
    return .success([.log(line)])
  }

  /// LEAVE from a replica: it leaves at the next cut. A stage's last replica cannot leave
  /// without a rollback: it is stopped now and recovered as a lost worker.
  mutating func askToLeave(from slot: Int) -> [Action] {
    guard phase == .running, !draining, let member = registry.members[slot] else { return [] }
    guard changes?.leaves.contains(member.identity) != true else { return [] }
    let name = layout.name(ofSlot: slot)
    let stage = layout.place(ofSlot: slot).stage
    guard counts(after: changes)[stage] > 1 else {
      let reason = "\(name) is its stage's last replica: it leaves now and is replaced"
      return [.log(reason)] + send(Message(kind: .stop, body: StopBody(reason: reason)), to: slot)
    }
    changes = changes ?? CutChanges()
    changes!.leaves.append(member.identity)
    return [.log("\(name) (\(member.hello.host) pid \(member.hello.pid)) leaves at the next cut")]
  }

  /// The stage with the least capacity, and why: each replica's samples/s over its busy share
  /// (what it could do if never idle; smoothed over its reports), summed over the stage's
  /// replicas. Before any figures: the stage with the fewest replicas.
  func neediestStage() -> (stage: Int, why: String) {
    // Replicas left out while the job goes on count for nothing.
    let live = (0..<stageCount).map {
      layout.slots(ofStage: $0).filter { !run.dropped.contains($0) }
    }
    let stats = live.map { $0.map { run.liveStats[$0] } }
    let smoothed = live.map { $0.map { run.capacity[$0] } }
    guard smoothed.allSatisfy({ $0.allSatisfy { $0 != nil } }) else {
      let counts = counts(after: nil)
      let stage = counts.indices.min { counts[$0] < counts[$1] }!
      return (stage, "no throughput measured yet: the stage with the fewest replicas")
    }
    let capacities = smoothed.map { $0.reduce(0.0) { $0 + $1! } }
    let stage = capacities.indices.min { capacities[$0] < capacities[$1] }!
    let figures = stats.indices.map { k in
      let each = stats[k].map {
        String(format: "last %.0f/s at busy %.2f", $0!.samplesPerSecond, $0!.busy)
      }
      return "\(k): \(Int(capacities[k].rounded())) (\(each.joined(separator: " + ")))"
    }
    return (
      stage,
      "least capacity, samples/s over busy (smoothed): " + figures.joined(separator: ", ")
    )
  }

  /// The feed just took `item` at `sequence`: a cut stops it while changes wait.
  mutating func holdForChanges(after item: FeedPlan.Item?, sequence: UInt64) {
    guard changes != nil, changes?.heldAt == nil, case .marker(let epoch, let kind, _)? = item,
      kind == .checkpoint || kind == .evalEnd
    else { return }
    changes?.heldAt = (sequence, epoch, kind == .evalEnd)
  }

  /// A marker's last copy reached the sink: the held cut has landed.
  mutating func landedForChanges(_ marker: Message) {
    if marker.sequence == changes?.heldAt?.sequence { changes?.landed = true }
  }

  /// Everything in front of the held cut has landed: stop the leavers, reset everyone else,
  /// and restart from the cut with the new replica counts (`rolledBack` assigns once every
  /// worker has said HELLO again).
  mutating func changeAtCut() -> [Action] {
    guard let change = changes, change.landed, let cut = change.heldAt, phase == .running,
      !draining, run.inFlight == 0, !cut.epochEnd || epochsCompleted > cut.epoch
    else { return [] }
    let counts = counts(after: change)
    changes = nil
    let leaving = Set(change.leaves)
    var actions: [Action] = []
    for slot in registry.members.indices {
      guard let member = registry.members[slot] else { continue }
      if leaving.contains(member.identity) {
        let stop = StopBody(reason: "\(layout.name(ofSlot: slot)) leaves at a cut")
        actions += send(Message(kind: .stop, body: stop), to: slot)
        departed.append(member)
      } else {
        let reset = StopBody(reason: "replicas change: every stage continues from the last cut")
        actions += send(Message(kind: .reset, body: reset), to: slot)
      }
    }
    for k in counts.indices { config.stages[k].replicas = counts[k] }
    registry = registry.relaid(leaving: leaving, joining: change.joins, dropped: run.dropped)
    jobs.retire(run.id)
    run = newRun(resume: run.resume, fed: run.trainBatchesFed)
    (phase, rewindOwed) = (.registering, true)
    deadline = now + registrationTimeout.micros
    let detail =
      "replicas per stage now \(counts.map(String.init).joined(separator: ", ")) ("
      + "\(change.joins.count) joined, \(change.leaves.count) left)"
    return actions + [
      .disconnectFeed, .manifest(state: "changing replicas", detail: detail), .log(detail),
    ]
  }

  /// A worker was lost while changes waited: the joiners take the vacancies they can (as any
  /// new worker would) and are told why where they cannot; the leaves are dropped (every
  /// worker is being reset, and a leaver that still wants to go asks again).
  mutating func placeJoinersInVacancies() -> [Action] {
    let joins = changes?.joins ?? []
    changes = nil
    return joins.flatMap { join -> [Action] in
      switch registry.register(
        identity: join.member.identity, hello: join.member.hello, nowMicros: now)
      {
      case .success(let slot):
        return [.log("\(layout.name(ofSlot: slot)) taken by a worker that was joining")]
      case .failure(let error): return refuseJoiner(join.member.identity, error.message)
      }
    }
  }

  /// Heartbeats to the workers waiting to join: they wait for the cut without giving up, and
  /// their answers (`fromStranger`) keep them alive here.
  func beatJoiners(_ beat: Heartbeat) -> [Action] {
    (changes?.joins ?? []).map {
      send(Message(kind: .heartbeat, body: beat), toIdentity: $0.member.identity)
    }
  }

  /// The job ends while workers wait to join: they are told so.
  mutating func turnAwayJoiners(_ reason: String) -> [Action] {
    let joins = changes?.joins ?? []
    changes?.joins = []
    return joins.flatMap { refuseJoiner($0.member.identity, "job \(run.id) \(reason)") }
  }

  func refuseJoiner(_ identity: [UInt8], _ text: String) -> [Action] {
    [send(Message(kind: .error, body: ErrorBody(message: text)), toIdentity: identity)]
  }

  /// Whether the worker with this pid left the job (at a cut, or dropped as a dead replica)
  /// and no worker in a slot has it now.
  public func hasLeft(pid: Int32) -> Bool {
    departed.contains { $0.hello.pid == pid } && !registry.members.contains { $0?.hello.pid == pid }
  }

  /// A control message from a worker that left at a cut: its trace still counts, its BYE is
  /// its goodbye, anything else is what it sent before it heard STOP.
  func fromDeparted(_ message: Message, _ member: Registry.Member) -> [Action] {
    switch message.kind {
    case .trace: return traced(message)
    case .bye: return [.log("\(member.hello.host) pid \(member.hello.pid) left")]
    default: return []
    }
  }
}
