import Learning
import Wire

/// The control plane and the sink in the scheduler machine: HELLO and registration, READY and
/// START, heartbeats, statistics, traces, BYE and ERROR; results and markers closing epochs.
extension SchedulerMachine {
  mutating func onControl(_ message: Message, from identity: [UInt8]) -> [Action] {
    if message.kind == .hello { return onHello(message, from: identity) }
    guard let slot = registry.slot(of: identity) else { return fromStranger(message, identity) }
    registry.heard(from: slot, atMicros: now)  // any word, even about a retired job, says it lives
    let name = layout.name(ofSlot: slot)
    if message.kind != .heartbeat {
      do throws(WireError) {
        try jobs.check(message, current: run.id)
      } catch {
        // A live report sent just before its worker was reset (a cut, a recovery) is late,
        // not wrong: dropped without a count.
        if case .staleJob = error, message.kind == .stats { return [] }
        return [
          .reject(reason: error.reason, detail: "\(message.kind) from \(name): \(error)")
        ]
      }
    }
    switch message.kind {
    case .ready:
      registry.markReady(slot)
      let hello = registry.members[slot]!.hello
      return [.log("\(name) ready (\(hello.host) pid \(hello.pid))")] + startIfReady()
    case .heartbeat:
      guard let beat = try? message.body(Heartbeat.self) else { return [] }
      let reply = Heartbeat(sentMicros: now, echoMicros: beat.sentMicros, schedulerMicros: now)
      return send(Message(kind: .heartbeat, body: reply), to: slot)
    case .stats: return onStats(message, from: slot)
    case .trace: return traced(message)
    case .bye: return onBye(message, from: slot)
    case .leave: return askToLeave(from: slot)
    case .error:
      let text = (try? message.body(ErrorBody.self).message) ?? "unreadable"
      return fail("\(name) failed: \(text)")
    default:
      return [
        .reject(reason: "unexpected-\(message.kind)", detail: "\(message.kind) from \(name)")
      ]
    }
  }

  /// A message from no registered worker: one waiting to join (its heartbeats say it lives),
  /// one that left at a cut, or a stranger (refused).
  private mutating func fromStranger(_ message: Message, _ identity: [UInt8]) -> [Action] {
    if let waiting = changes?.joins.firstIndex(where: { $0.member.identity == identity }) {
      changes?.joins[waiting].member.lastHeardMicros = now
      return []
    }
    if let gone = departed.first(where: { $0.identity == identity }) {
      return fromDeparted(message, gone)
    }
    return [
      .reject(reason: "unregistered", detail: "\(message.kind) from a peer that never said HELLO")
    ]
  }

  private mutating func onHello(_ message: Message, from identity: [UInt8]) -> [Action] {
    guard let hello = try? message.body(Hello.self) else {
      return [.reject(reason: "bad-body", detail: "HELLO without a readable body")]
    }
    let who = "\(hello.host) pid \(hello.pid)"
    func refuse(_ reason: String, _ detail: String, _ answer: String) -> [Action] {
      let error = Message(kind: .error, body: ErrorBody(message: answer))
      return [.reject(reason: reason, detail: detail), send(error, toIdentity: identity)]
    }
    if requiresKeys && hello.publicKey == nil {
      return refuse(
        "refused-hello", "refused \(who): no public key in its HELLO",
        "this job uses CURVE: the worker's HELLO carries no public key")
    }
    if let problem = Registry.versionProblem(hello) {
      return refuse("refused-hello", "refused \(who): \(problem)", problem.message)
    }
    guard phase == .registering else {
      switch askToJoin(hello, identity: identity) {
      case .success(let actions): return actions
      case .failure(let error):
        return refuse("late-hello", "HELLO from \(who) while the job runs: \(error)", error.message)
      }
    }
    switch registry.register(identity: identity, hello: hello, nowMicros: now) {
    case .failure(let error):
      return refuse("refused-hello", "refused \(who): \(error)", error.message)
    case .success(let slot):
      let line = Action.log(
        "\(layout.name(ofSlot: slot)) registered: \(who), data at \(hello.dataEndpoint)")
      guard registry.readyToAssign else { return [line] }
      // After a failure, the directory is rewound first; ASSIGN follows `.rolledBack`.
      return [line] + (recoveryNoticedMicros != nil || rewindOwed ? [.rollBack] : assignAll())
    }
  }

  mutating func assignAll() -> [Action] {
    registry.markAllAssigned()
    return [.assignAll]
  }

  /// Every stage is ready: connect the feed to stage 0 and say START.
  private mutating func startIfReady() -> [Action] {
    guard phase == .registering, registry.isFull, registry.allReady else { return [] }
    // silence counts from START
    for slot in registry.members.indices { registry.heard(from: slot, atMicros: now) }
    phase = .running
    if let noticed = recoveryNoticedMicros {
      recoveries[recoveries.count - 1].recoverySeconds = Double(now - noticed) / 1e6
      recoveryNoticedMicros = nil
    }
    let line =
      "all \(stageCount) stages ready\(replicasNote); training (\(config.schedule.rawValue), at "
      + "most \(run.maxInFlight) batches in flight)"
    let firsts = layout.slots(ofStage: 0).map { registry.members[$0]!.hello }
    let actions =
      [.connectFeed(firsts)] + sendAll(Message(kind: .start))
      + [.started, .log(line)]
    // A run resumed after its last epoch has nothing to train: it stops at once.
    return actions + (run.isFinished ? stop(reason: "finished") : [])
  }

  /// " (\(n) workers)" when some stage has replicas.
  var replicasNote: String { layout.isReplicated ? " (\(layout.slotCount) workers)" : "" }

  private mutating func onStats(_ message: Message, from slot: Int) -> [Action] {
    guard let body = try? message.body(StatsBody.self) else {
      return [.reject(reason: "bad-body", detail: "STATS body from \(layout.name(ofSlot: slot))")]
    }
    if let live = body.live { run.noteLive(live, slot: slot) }
    if let credit = body.credit, credit.stage == layout.place(ofSlot: slot).stage + 1 {
      return takeCredit(credit)
    }
    guard let totals = body.totals, totals.stage == layout.place(ofSlot: slot).stage else {
      return []
    }
    run.add(totals, replica: layout.place(ofSlot: slot).replica)
    return closeEpochs()
  }

  private mutating func onBye(_ message: Message, from slot: Int) -> [Action] {
    // A malformed goodbye is one worker's bad message, not the end of the run.
    guard let bye = try? message.body(Bye.self) else {
      return [.reject(reason: "bad-body", detail: "BYE body from \(layout.name(ofSlot: slot))")]
    }
    byes[slot] = bye
    switch phase {
    case .running, .registering:
      let reason = "its worker left during the run (\(bye.reason))"
      let stage = layout.place(ofSlot: slot).stage
      return lose(WorkerFailure(stage: stage, reason: reason, silentSeconds: 0, slot: slot))
    case .stopping:
      return expectedByes.allSatisfy { byes[$0] != nil } ? doneStopping() : []
    case .done: return []
    }
  }

  // MARK: - Sink

  mutating func onSink(_ message: Message) -> [Action] {
    do throws(WireError) {
      try jobs.check(message, current: run.id)
      guard [.result, .marker, .ack].contains(message.kind) else {
        throw .unexpected("\(message.kind) at the sink")
      }
    } catch {
      return [.reject(reason: error.reason, detail: "a sink message (\(error.reason)): \(error)")]
    }
    if message.kind == .ack { return [.acknowledged(message)] }  // the feed's routing
    if run.landed(message, atMicros: now) { landedForChanges(message) }
    return message.kind == .marker ? closeEpochs() : []
  }

  /// Every epoch whose figures are all in is closed; the run stops after the last.
  mutating func closeEpochs() -> [Action] {
    let closed = run.closeEpochs(config: config).map {
      Action.epochClosed($0.report, epoch: $0.epoch)
    }
    guard phase == .running, run.isFinished else { return closed }
    return closed + stop(reason: interrupted ? "interrupted" : "finished")
  }
}
