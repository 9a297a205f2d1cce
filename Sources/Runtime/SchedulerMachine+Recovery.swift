import Wire

/// Losing a worker mid-run without losing the run: its stage is vacated, the survivors are
/// reset (they drop their state and say HELLO again), a replacement is asked for, and once
/// every stage has a worker the run directory is rewound to the newest cut every stage
/// checkpointed and a new `JobRun` starts from it, under a new job id — whatever was still in
/// flight belongs to the retired job and is refused as stale. A lost replica whose stage has
/// another is dropped instead: the stage goes on one replica narrower from that cut, and no
/// replacement is waited for (a worker may join later).
extension SchedulerMachine {
  mutating func lose(_ failure: WorkerFailure) -> [Action] {
    guard phase == .registering || phase == .running, !hasLeft(failure) else { return [] }
    let failed = slot(of: failure)
    if canGoOnWithout(failed) { return goOnWithout(failed, failure) }
    guard recoveries.filter({ $0.rolledBack != false }).count < config.daemon.restarts else {
      return fail("\(failure)", dead: [failure.stage])
    }
    recoveryNoticedMicros = recoveryNoticedMicros ?? now
    recoveries.append(
      Recovery(
        stage: failure.stage, reason: failure.reason, detectedAfterSeconds: failure.silentSeconds,
        recoverySeconds: nil, resumedAfterEpoch: 0, batchesRetrained: 0,
        batchesInFlight: run.inFlight))
    // A worker that was only silent must not come back to a stage someone else now holds.
    let dead =
      "stage \(failure.stage) was declared dead (\(failure.reason)) and given to another worker"
    // Slots left by dropped replicas go first: a rollback waits for no one in them.
    let identity = registry.members[failed]?.identity
    forgetDropped()
    let slot = identity.flatMap { registry.slot(of: $0) } ?? failed
    var actions = send(Message(kind: .error, body: ErrorBody(message: dead)), to: slot)
    // A replica (its slot held, another of its stage held too) is dropped, else replaced.
    let held = heldSlots(ofStage: failure.stage)
    let goesOn = held.contains(slot) && held.count > 1
    let reset = Message(
      kind: .reset, body: StopBody(reason: "stage \(failure.stage) failed: \(failure.reason)"))
    actions += goesOn ? dropAndRollBack(slot, failure, reset) : vacate(slot, failure, reset)
    jobs.retire(run.id)
    // Until the rollback: a job with nothing in flight, from where the failed one started.
    run = newRun(resume: run.resume, fed: run.trainBatchesFed)
    (phase, draining) = (.registering, false)
    deadline = now + registrationTimeout.micros
    return actions + [.disconnectFeed, .manifest(state: "recovering", detail: "\(failure)")]
      + (goesOn ? [] : [.vacancy(stage: failure.stage)])
  }

  /// A worker that left the job (at a cut, or dropped as a dead replica), reported again.
  func hasLeft(_ failure: WorkerFailure) -> Bool {
    failure.slot == nil && failure.pid.map(hasLeft(pid:)) == true
  }

  /// The failed worker's slot waits for a replacement; the survivors are reset.
  mutating func vacate(_ slot: Int, _ failure: WorkerFailure, _ reset: Message) -> [Action] {
    registry.vacate(slot)
    return [.log("\(failure); waiting for a worker to take stage \(failure.stage)")]
      + sendAll(reset) + placeJoinersInVacancies()
  }

  /// A replica died and its stage has another, but the job cannot go on as it is (it was not
  /// running, or a cut or another replica's credit was pending): the stage goes on one
  /// replica narrower (with any worker waiting to join) from the newest cut, nothing waits
  /// for a replacement.
  mutating func dropAndRollBack(_ slot: Int, _ failure: WorkerFailure, _ reset: Message)
    -> [Action]
  {
    let member = registry.members[slot]!
    departed.append(member)
    let actions = sendAll(reset)  // not to the dead: it has its ERROR
      .filter { if case .send(let to, _) = $0 { to != member.identity } else { true } }
    registry = registry.relaid(leaving: [member.identity], joining: changes?.joins ?? [])
    changes = nil
    for k in layout.counts.indices { config.stages[k].replicas = layout.counts[k] }
    let line =
      "\(failure); stage \(failure.stage) goes on with \(layout.counts[failure.stage]) "
      + "replica\(layout.counts[failure.stage] == 1 ? "" : "s"), from the newest cut"
    return [.log(line)] + actions
  }

  /// The slot of a failed worker: as reported, else the one its process holds, else its
  /// stage's first.
  func slot(of failure: WorkerFailure) -> Int {
    if let slot = failure.slot { return slot }
    let slots = layout.slots(ofStage: failure.stage)
    let held = slots.first { slot in
      failure.pid != nil && registry.members[slot]?.hello.pid == failure.pid
    }
    return held ?? slots.lowerBound
  }

  /// The directory is rewound to `point`: the job continues from there, and the epochs
  /// trained again are counted.
  mutating func rolledBack(to point: ResumePoint) -> [Action] {
    let fed = max(0, run.batchesFed(since: point.epochsDone) - point.batchesDone)
    rewindOwed = false
    if recoveryNoticedMicros != nil, !recoveries.isEmpty {
      recoveries[recoveries.count - 1].resumedAfterEpoch = point.epochsDone
      recoveries[recoveries.count - 1].resumedAfterBatches = point.batchesDone
      recoveries[recoveries.count - 1].batchesRetrained = fed
    }
    run = JobRun(
      id: run.id, config: config, trainCount: trainCount, testCount: testCount, resume: point,
      trainBatchesFed: run.trainBatchesFed.filter { $0.key < point.epochsDone })
    let skipped = point.skipped.map { Action.log("skipped a damaged checkpoint: \($0)") }
    let line =
      recoveryNoticedMicros != nil
      ? "restarting from \(point.description) (\(fed) batches to train again)"
      : "continuing from \(point.description) on \(layout.slotCount) workers (replicas per "
        + "stage: \(layout.counts.map(String.init).joined(separator: ", ")))"
    return skipped + [.log(line)] + assignAll()
  }
}
