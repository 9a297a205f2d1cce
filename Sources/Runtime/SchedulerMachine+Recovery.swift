import Wire

/// Losing a worker mid-run without losing the run: its stage is vacated, the survivors are
/// reset (they drop their state and say HELLO again), a replacement is asked for, and once
/// every stage has a worker the run directory is rewound to the newest cut every stage
/// checkpointed and a new `JobRun` starts from it, under a new job id — whatever was still in
/// flight belongs to the retired job and is refused as stale.
extension SchedulerMachine {
  mutating func lose(_ failure: WorkerFailure) -> [Action] {
    guard phase == .registering || phase == .running else { return [] }
    // A replica that left at a cut, exiting as it should.
    if failure.slot == nil, let pid = failure.pid,
      departed.contains(where: { $0.hello.pid == pid }),
      !registry.members.contains(where: { $0?.hello.pid == pid })
    {
      return []
    }
    guard recoveries.count < config.daemon.restarts else {
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
    var actions: [Action] = [
      .log("\(failure); waiting for a worker to take stage \(failure.stage)")
    ]
    let slot = slot(of: failure)
    actions += send(Message(kind: .error, body: ErrorBody(message: dead)), to: slot)
    registry.vacate(slot)
    let reset = StopBody(reason: "stage \(failure.stage) failed: \(failure.reason)")
    actions += sendAll(Message(kind: .reset, body: reset)) + placeJoinersInVacancies()
    jobs.retire(run.id)
    // Until the rollback: a job with nothing in flight, from where the failed one started.
    run = newRun(resume: run.resume, fed: run.trainBatchesFed)
    (phase, draining) = (.registering, false)
    deadline = now + registrationTimeout.micros
    return actions + [
      .disconnectFeed, .manifest(state: "recovering", detail: "\(failure)"),
      .vacancy(stage: failure.stage),
    ]
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
