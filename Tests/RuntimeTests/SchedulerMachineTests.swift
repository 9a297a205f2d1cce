import Learning
import Testing
import Wire

@testable import Runtime

/// The scheduler's decisions without sockets: a machine fed HELLOs, READYs, results, markers,
/// statistics, silence and goodbyes by hand, and what it answers.
@Suite("Scheduler machine: registration, epochs and recovery without sockets")
struct SchedulerMachineTests {
  /// Two stages of a small job: 64 training samples in batches of 16 (4 a epoch, at most 4
  /// in flight), 32 test samples in batches of 16.
  static func machine(restarts: Int = 3, epochs: Int = 1) -> SchedulerMachine {
    var config = RunConfig()
    config.data.source = .synthetic
    config.stages = RunConfig.mlpStages(width: 8, count: 2)
    (config.training.batchSize, config.training.evalBatchSize) = (16, 16)
    config.training.epochs = epochs
    config.daemon.restarts = restarts
    var machine = SchedulerMachine(
      config: config, trainCount: 64, testCount: 32, resume: nil, seed: 7, registrationTimeout: .seconds(10))
    _ = machine.on(.begin(nowMicros: 0))
    return machine
  }

  /// The messages among `actions`: to whom (the identity's first byte), what, under which job.
  static func sent(_ actions: [SchedulerMachine.Action]) -> [(to: UInt8, kind: Kind, job: UInt32)] {
    actions.compactMap { if case .send(let to, let m) = $0 { (to[0], m.kind, m.job) } else { nil } }
  }

  static func control(_ m: inout SchedulerMachine, from identity: UInt8, _ kind: Kind, at now: Int64 = 1) -> [SchedulerMachine.Action] {
    var message = Message(kind: kind)
    message.job = m.run.id
    return m.on(.control(identity: [identity], message, nowMicros: now))
  }

  static func hello(_ m: inout SchedulerMachine, from identity: UInt8, stage: Int?, at now: Int64 = 1) -> [SchedulerMachine.Action] {
    m.on(.control(identity: [identity], Message(kind: .hello, body: RuntimeTests.hello(stage, pid: Int32(identity))), nowMicros: now))
  }

  /// Both stages registered, assigned, ready and started.
  static func running(restarts: Int = 3, epochs: Int = 1) -> SchedulerMachine {
    var m = machine(restarts: restarts, epochs: epochs)
    _ = hello(&m, from: 1, stage: 0)
    #expect(hello(&m, from: 2, stage: 1).contains(.assignAll), "ASSIGN once every stage has a worker")
    _ = control(&m, from: 1, .ready)
    let start = control(&m, from: 2, .ready)
    #expect(sent(start).filter { $0.kind == .start }.map(\.to) == [1, 2] && start.contains(.started))
    #expect(m.phase == .running)
    return m
  }

  /// Feeds what the credits allow; returns the items fed.
  static func feed(_ m: inout SchedulerMachine, at now: Int64 = 2) -> [FeedPlan.Item] {
    var items: [FeedPlan.Item] = []
    while let item = m.nextFeed {
      items.append(item)
      _ = m.on(.fed(nowMicros: now))
    }
    return items
  }

  static func sink(_ m: inout SchedulerMachine, _ kind: Kind, epoch: Int = 0, marker: MarkerFlag? = nil, job: UInt32? = nil) -> [SchedulerMachine.Action] {
    var message = Message(kind: kind)
    (message.job, message.epoch) = (job ?? m.run.id, UInt32(epoch))
    if let marker { message.flags = marker.rawValue }
    // Each result its own batch (the sink counts a batch's result once).
    if kind == .result { message.sequence = m.run.sequence * 1000 + UInt64(m.run.inFlight) }
    return m.on(.sink(message, nowMicros: 3))
  }

  static func totals(_ m: inout SchedulerMachine, stage: Int, _ phase: Phase, samples: Int, batches: Int, job: UInt32? = nil) -> [SchedulerMachine.Action] {
    var totals = PhaseTotals(stage: stage, epoch: 0, phase: phase)
    (totals.samples, totals.batches, totals.correct) = (samples, batches, samples / 2)
    var message = Message(kind: .stats, body: StatsBody(live: nil, totals: totals))
    message.job = job ?? m.run.id
    return m.on(.control(identity: [UInt8(stage + 1)], message, nowMicros: 3))
  }

  @Test func aWholeEpochClosesWithItsAccountingAndTheRunStops() {
    var m = Self.running()
    #expect(Self.feed(&m).count == 5, "4 batches (the window) and the train-end marker")
    for _ in 0..<4 { _ = Self.sink(&m, .result) }
    _ = Self.sink(&m, .marker, marker: .trainEnd)
    #expect(Self.feed(&m).count == 3, "2 eval batches and the eval-end marker")
    for _ in 0..<2 { _ = Self.sink(&m, .result) }
    _ = Self.sink(&m, .marker, marker: .evalEnd)
    for stage in 0..<2 {
      _ = Self.totals(&m, stage: stage, .train, samples: 64, batches: 4)
      let last = Self.totals(&m, stage: stage, .eval, samples: 32, batches: 2)
      if stage == 1 {
        guard case .epochClosed(let report, epoch: 0)? = last.first else {
          Issue.record("no epoch closed: \(last)")
          return
        }
        #expect(report.accounting == EpochAccounting(batchesFed: 4, batchesTrained: [4, 4], evalSamplesFed: 32, evalSamplesScored: [32, 32]))
        #expect(Self.sent(last).filter { $0.kind == .stop }.map(\.to) == [1, 2], "the last epoch: STOP to both")
      }
    }
    #expect(m.phase == .stopping)
    _ = Self.control(&m, from: 1, .bye)  // unreadable body: rejected, still waiting
    #expect(m.phase == .stopping)
    _ = m.on(.tick(nowMicros: 31_000_003))
    #expect(m.phase == .done && m.failure == nil)
  }

  @Test func aWorkerLostWhileRegisteringIsReplacedAndTheJobStartsUnderANewId() {
    var m = Self.machine()
    _ = Self.hello(&m, from: 1, stage: 0)
    _ = Self.hello(&m, from: 2, stage: 1)
    _ = Self.control(&m, from: 1, .ready)
    let old = m.run.id
    let lost = m.on(.workerLost(WorkerFailure(stage: 1, reason: "exited", silentSeconds: 0)))
    let sent = Self.sent(lost)
    #expect(sent.map(\.to) == [2, 1] && sent.map(\.kind) == [.error, .reset] && sent.allSatisfy { $0.job == old })
    #expect(lost.contains(.vacancy(stage: 1)) && lost.contains(.manifest(state: "recovering", detail: "stage 1: exited")))
    #expect(m.run.id != old && m.phase == .registering && m.registry.members[1] == nil)
    #expect(m.registry.members[0]?.ready == false, "the survivor must get ready again")
    // The survivor's READY for the retired job is stale; it says HELLO again, a new worker comes.
    var stale = Message(kind: .ready)
    stale.job = old
    #expect(m.on(.control(identity: [1], stale, nowMicros: 2)).contains { if case .reject("stale-job", _) = $0 { true } else { false } })
    // Its live report sent just before the reset is late, not wrong: dropped, not counted.
    var lateStats = Message(kind: .stats, body: StatsBody(live: nil, totals: nil))
    lateStats.job = old
    #expect(m.on(.control(identity: [1], lateStats, nowMicros: 2)).isEmpty)
    _ = Self.hello(&m, from: 1, stage: 0)
    #expect(Self.hello(&m, from: 9, stage: 1) == [.log("stage 1 registered: h pid 9, data at tcp://127.0.0.1:5009"), .rollBack])
    let back = m.on(.rolledBack(ResumePoint(epochsDone: 0, checkpoints: [])))
    #expect(back.last == .assignAll)
    _ = Self.control(&m, from: 1, .ready, at: 2_000_000)
    let start = Self.control(&m, from: 9, .ready, at: 2_000_000)
    #expect(Self.sent(start).map(\.to) == [1, 9] && Self.sent(start).allSatisfy { $0.job == m.run.id })
    #expect(m.recoveries.count == 1 && abs((m.recoveries[0].recoverySeconds ?? 0) - 2.0) < 1e-5)
  }

  @Test func aWorkerLostDuringAMarkerRollsBackAndItsOwedBatchesAreCounted() {
    var m = Self.running()
    #expect(Self.feed(&m).last == .marker(epoch: 0, .trainEnd))
    _ = Self.sink(&m, .result)
    _ = Self.sink(&m, .result)
    let old = m.run.id
    _ = Self.control(&m, from: 1, .heartbeat, at: 5_500_000)  // stage 0 is heard; stage 1 is not
    let lost = m.on(.tick(nowMicros: 6_000_000))
    #expect(lost.contains(.vacancy(stage: 1)), "\(lost)")
    #expect(m.recoveries.last?.batchesInFlight == 2 && (m.recoveries.last?.detectedAfterSeconds ?? 0) > 5.9)
    // The marker and the results still in flight belong to the retired job.
    let late = Self.sink(&m, .marker, marker: .trainEnd, job: old)
    #expect(late.contains { if case .reject("stale-job", _) = $0 { true } else { false } })
    #expect(m.run.inFlight == 0 && m.nextFeed == nil, "nothing is fed while registering")
    _ = Self.hello(&m, from: 1, stage: 0)
    _ = Self.hello(&m, from: 3, stage: 1)
    _ = m.on(.rolledBack(ResumePoint(epochsDone: 0, checkpoints: [])))
    #expect(m.recoveries.last?.batchesRetrained == 4, "every batch fed since the start is trained again")
    _ = Self.control(&m, from: 1, .ready)
    _ = Self.control(&m, from: 3, .ready)
    #expect(Self.feed(&m).first == .train(epoch: 0, indices: m.run.plan.trainOrder.batches(epoch: 0)[0]))
  }

  @Test func aWorkerLostDuringEvaluationRetiresItsScoresAndTheEpochIsFedAgain() {
    var m = Self.running()
    _ = Self.feed(&m)
    for _ in 0..<4 { _ = Self.sink(&m, .result) }
    _ = Self.sink(&m, .marker, marker: .trainEnd)
    for stage in 0..<2 { _ = Self.totals(&m, stage: stage, .train, samples: 64, batches: 4) }
    #expect(Self.feed(&m).count == 3, "evaluating")
    let old = m.run.id
    var bye = Message(kind: .bye, body: Bye(stage: 0, checkpoint: nil, rejected: [:], traceDropped: 0, reason: "signal"))
    bye.job = old
    let lost = m.on(.control(identity: [1], bye, nowMicros: 4))
    #expect(lost.contains(.vacancy(stage: 0)) && m.recoveries.last?.reason.contains("left during the run") == true)
    let late = Self.totals(&m, stage: 1, .eval, samples: 32, batches: 2, job: old)
    #expect(!late.contains { if case .epochClosed = $0 { true } else { false } }, "no epoch closes on a retired job's scores")
    _ = Self.hello(&m, from: 4, stage: 0)
    _ = Self.hello(&m, from: 2, stage: 1)
    _ = m.on(.rolledBack(ResumePoint(epochsDone: 0, checkpoints: [])))
    _ = Self.control(&m, from: 4, .ready)
    _ = Self.control(&m, from: 2, .ready)
    #expect(Self.feed(&m).count == 5, "the epoch's training is fed again from its first batch")
    #expect(m.run.trainBatchesFed[0] == 4, "counted once, for the job that trains them")
  }

  @Test func aLossBeyondTheRestartsFailsTheRunAndStopsOnlyTheSurvivors() {
    var m = Self.running(restarts: 0)
    let lost = m.on(.workerLost(WorkerFailure(stage: 0, reason: "exited", silentSeconds: 0)))
    #expect(lost.first == .manifest(state: "failed", detail: "stage 0: exited"))
    #expect(Self.sent(lost).map(\.to) == [2] && Self.sent(lost).map(\.kind) == [.stop])
    #expect(m.failure == "stage 0: exited" && m.phase == .stopping)
    var bye = Message(kind: .bye, body: Bye(stage: 1, checkpoint: nil, rejected: [:], traceDropped: 0, reason: "stopped"))
    bye.job = m.run.id
    _ = m.on(.control(identity: [2], bye, nowMicros: 5))
    #expect(m.phase == .done)
  }

  @Test func registrationThatNeverCompletesFailsWithTheStagesMissing() {
    var m = Self.machine()
    _ = Self.hello(&m, from: 1, stage: 0)
    _ = m.on(.tick(nowMicros: 4_000_000))
    #expect(m.failure == nil)
    _ = Self.control(&m, from: 1, .heartbeat, at: 9_000_000)  // waiting workers answer heartbeats
    _ = m.on(.tick(nowMicros: 10_000_000))
    #expect(m.failure?.hasPrefix("stages 0, 1 never became ready within 10.0 seconds") == true, "\(m.failure ?? "")")
  }
}
