import Learning
import Telemetry
import Wire

/// A worker that says HELLO while the job runs joins it as one more replica of a stage: the
/// one it asks for (`--stage K`), else the one with the least capacity (samples/s over busy,
/// summed over its replicas: the bottleneck). The feed goes on up to the next cut — a
/// checkpoint marker, or the end of an epoch's evaluation — and stops there; once everything in
/// front of the cut has landed (and that epoch is reported), every worker is reset and the job
/// restarts from that cut under a new id with the stage one replica wider. The joiner gets the
/// stage's weights and optimizer state from the cut's checkpoint, as every replica does, and
/// nothing is trained again. A worker lost meanwhile turns the join into its replacement.
extension SchedulerMachine {
  /// A worker waiting to join, and where the feed stopped for it.
  struct Joining: Sendable {
    var identity: [UInt8]
    var hello: Hello
    var stage: Int
    /// The cut the feed stopped after: its marker's sequence and epoch, and whether it ends
    /// the epoch (then the epoch's report comes first). Nil until the feed reaches one.
    var heldAt: (sequence: UInt64, epoch: Int, epochEnd: Bool)?
    /// Every copy of that marker reached the sink.
    var landed = false
  }

  /// HELLO while running: the worker waits for the next cut, or is told why it cannot join.
  mutating func askToJoin(_ hello: Hello, identity: [UInt8]) -> Result<[Action], RuntimeError> {
    let who = "\(hello.host) pid \(hello.pid)"
    guard phase == .running, !draining else {
      return .failure(RuntimeError("job \(run.id) is stopping; it takes no more workers"))
    }
    guard joining == nil else {
      return .failure(
        RuntimeError("another worker is joining job \(run.id); try again in a few seconds"))
    }
    let (stage, why) = hello.requestedStage.map { ($0, "asked for") } ?? neediestStage()
    guard (0..<stageCount).contains(stage) else {
      return .failure(
        RuntimeError("stage \(stage) does not exist: this job has stages 0…\(stageCount - 1)"))
    }
    var wider = config
    wider.stages[stage].replicas += 1
    do throws(ConfigError) { try wider.validate() } catch {
      return .failure(RuntimeError("stage \(stage) cannot take another replica: \(error)"))
    }
    joining = Joining(identity: identity, hello: hello, stage: stage)
    let line =
      "\(who) joins stage \(stage) as replica \(layout.counts[stage]) (\(why)) at the next cut"
    return .success([.log(line)])
  }

  /// The stage with the least capacity, and why: each replica's samples/s over its busy share
  /// (what it could do if never idle), summed over the stage's replicas. Before any figures:
  /// the stage with the fewest replicas.
  func neediestStage() -> (stage: Int, why: String) {
    let stats = (0..<stageCount).map { layout.slots(ofStage: $0).map { run.liveStats[$0] } }
    guard stats.allSatisfy({ $0.allSatisfy { $0 != nil } }) else {
      let stage = layout.counts.indices.min { layout.counts[$0] < layout.counts[$1] }!
      return (stage, "no throughput measured yet: the stage with the fewest replicas")
    }
    let capacities = stats.map {
      $0.reduce(0.0) { $0 + $1!.samplesPerSecond / max($1!.busy, 0.01) }
    }
    let stage = capacities.indices.min { capacities[$0] < capacities[$1] }!
    let figures = stats.indices.map { k in
      let each = stats[k].map {
        String(format: "%.0f/s at busy %.2f", $0!.samplesPerSecond, $0!.busy)
      }
      return "\(k): \(Int(capacities[k].rounded())) (\(each.joined(separator: " + ")))"
    }
    return (stage, "least capacity, samples/s over busy: " + figures.joined(separator: ", "))
  }

  /// The feed just took `item` at `sequence`: a cut stops it while a worker waits to join.
  mutating func holdForJoin(after item: FeedPlan.Item?, sequence: UInt64) {
    guard joining?.heldAt == nil, case .marker(let epoch, let kind, _)? = item,
      kind == .checkpoint || kind == .evalEnd
    else { return }
    joining?.heldAt = (sequence, epoch, kind == .evalEnd)
  }

  /// A marker's last copy reached the sink: the held cut has landed.
  mutating func landedForJoin(_ marker: Message) {
    if marker.sequence == joining?.heldAt?.sequence { joining?.landed = true }
  }

  /// Everything in front of the held cut has landed: reset every worker, and restart from the
  /// cut with the joiner's stage one replica wider (`rolledBack` assigns once all say HELLO).
  mutating func joinAtCut() -> [Action] {
    guard let join = joining, join.landed, let cut = join.heldAt, phase == .running,
      !draining, run.inFlight == 0, !cut.epochEnd || epochsCompleted > cut.epoch
    else { return [] }
    joining = nil
    let who = "\(join.hello.host) pid \(join.hello.pid)"
    let reason = "\(who) joins stage \(join.stage): every stage continues from the last cut"
    let actions = sendAll(Message(kind: .reset, body: StopBody(reason: reason)))
    config.stages[join.stage].replicas += 1
    registry = registry.addingReplica(
      of: join.stage, identity: join.identity, hello: join.hello, nowMicros: now)
    jobs.retire(run.id)
    run = newRun(resume: run.resume, fed: run.trainBatchesFed)
    (phase, rewindOwed) = (.registering, true)
    deadline = now + registrationTimeout.micros
    let detail = "\(who) joins stage \(join.stage) (\(layout.counts[join.stage]) replicas)"
    return actions + [.disconnectFeed, .manifest(state: "joining", detail: detail), .log(reason)]
  }

  /// A worker was lost while another waited to join: the joiner takes the vacancy if it can
  /// (as any new worker would), else it is told why not.
  mutating func placeJoinerInVacancy() -> [Action] {
    guard let join = joining else { return [] }
    joining = nil
    switch registry.register(identity: join.identity, hello: join.hello, nowMicros: now) {
    case .success(let slot):
      return [.log("\(layout.name(ofSlot: slot)) taken by the worker that was joining")]
    case .failure(let error):
      var message = Message(kind: .error, body: ErrorBody(message: error.message))
      message.job = run.id
      return [.send(to: join.identity, message)]
    }
  }

  /// The job ends while a worker waits to join: it is told so.
  mutating func turnAwayJoiner(_ reason: String) -> [Action] {
    guard let join = joining else { return [] }
    joining = nil
    var message = Message(kind: .error, body: ErrorBody(message: "job \(run.id) \(reason)"))
    message.job = run.id
    return [.send(to: join.identity, message)]
  }
}
