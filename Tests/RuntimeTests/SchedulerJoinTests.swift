import Learning
import Telemetry
import Testing
import Wire

@testable import Runtime

/// Workers that say HELLO while the job runs join as more replicas of the neediest stage at
/// the next cut, and replicas that ask to LEAVE go there, without a batch trained twice; or
/// they are told why not.
@Suite("Scheduler machine: replicas join and leave a running job")
struct SchedulerJoinTests {
  typealias T = SchedulerMachineTests

  static func logs(_ actions: [SchedulerMachine.Action]) -> [String] {
    actions.compactMap { if case .log(let line) = $0 { line } else { nil } }
  }

  static func live(_ m: inout SchedulerMachine, slot: Int, samplesPerSecond: Double, busy: Double) {
    let stats = LiveStats(stage: slot, step: 1, loss: 1, samplesPerSecond: samplesPerSecond, busy: busy, lastSequence: 0, rejected: [:])
    var message = Message(kind: .stats, body: StatsBody(live: stats, totals: nil))
    message.job = m.run.id
    _ = m.on(.control(identity: [UInt8(slot + 1)], message, nowMicros: 2))
  }

  static func marker(_ m: inout SchedulerMachine, _ flag: MarkerFlag, sequence: UInt64, replica: Int = 0) -> [SchedulerMachine.Action] {
    var message = Message(kind: .marker)
    (message.job, message.flags, message.sequence) = (m.run.id, flag.rawValue, sequence)
    message.replica = UInt16(replica)
    return m.on(.sink(message, nowMicros: 3))
  }

  @Test func aHelloWhileRunningJoinsTheSlowestStageAtTheNextCut() throws {
    var m = T.running(epochs: 2)
    Self.live(&m, slot: 0, samplesPerSecond: 1000, busy: 0.2)  // could do 5000 samples/s
    Self.live(&m, slot: 1, samplesPerSecond: 1000, busy: 0.9)  // could do 1111: the bottleneck
    let asked = T.hello(&m, from: 3, stage: nil)
    #expect(T.sent(asked).isEmpty, "no answer until the cut")
    #expect(Self.logs(asked).contains { $0.contains("joins stage 1 as replica 1") && $0.contains("0: 5000 (last 1000/s at busy 0.20), 1: 1111 (last 1000/s at busy 0.90)") }, "\(asked)")
    let second = T.hello(&m, from: 4, stage: nil)
    #expect(Self.logs(second).contains { $0.contains("joins stage 1 as replica 2") }, "\(second)")
    // The feed runs to the end of epoch 0's evaluation (sequence 7), and stops there.
    #expect(T.feed(&m).count == 5)
    for _ in 0..<4 { _ = T.sink(&m, .result) }
    _ = Self.marker(&m, .trainEnd, sequence: 4)
    #expect(T.feed(&m).count == 3, "2 eval batches and the eval-end marker")
    for _ in 0..<2 { _ = T.sink(&m, .result) }
    #expect(m.nextFeed == nil, "held at the cut")
    _ = Self.marker(&m, .evalEnd, sequence: 7)
    #expect(T.sent(m.on(.tick(nowMicros: 4))).isEmpty, "not before epoch 0 is reported")
    for stage in 0..<2 {
      _ = T.totals(&m, stage: stage, .train, samples: 64, batches: 4)
      _ = T.totals(&m, stage: stage, .eval, samples: 32, batches: 2)
    }
    #expect(m.epochsCompleted == 1)
    let oldJob = m.run.id
    let reset = m.on(.tick(nowMicros: 5))
    #expect(T.sent(reset).filter { $0.kind == .reset }.map(\.to) == [1, 2], "the joiner is not reset")
    #expect(m.phase == .registering && m.layout.counts == [1, 3] && m.config.stages[1].replicas == 3)
    #expect(m.registry.members.map { $0?.identity[0] } == [1, 2, 3, 4])
    _ = T.hello(&m, from: 1, stage: 0)
    #expect(T.hello(&m, from: 2, stage: 1).contains(.rollBack), "the directory's cut first")
    let assigned = m.on(.rolledBack(ResumePoint(epochsDone: 1, checkpoints: [])))
    #expect(assigned.contains(.assignAll) && m.run.id != oldJob && m.recoveries.isEmpty)
    #expect(Self.logs(assigned).contains { $0.contains("continuing from") && $0.contains("4 workers") }, "\(assigned)")
    #expect(m.run.maxInFlight == 8, "two batches in flight per worker")
    for worker: UInt8 in 1...4 { _ = T.control(&m, from: worker, .ready) }
    #expect(m.phase == .running && T.feed(&m).count == 8, "epoch 1: 4 + 2 batches, 2 markers")
  }

  /// A joiner that waits long for the cut hears heartbeats, and its answers keep it alive: it
  /// is not taken for dead once it is a member.
  @Test func aJoinerWaitingLongIsKeptAlive() {
    var m = T.running(epochs: 2)
    _ = T.hello(&m, from: 3, stage: nil)
    let limit = Int64(m.config.daemon.liveness) * Int64(m.config.daemon.heartbeatMilliseconds) * 1000
    var at: Int64 = 10
    while at < 3 * limit {  // everyone answers the scheduler's heartbeats meanwhile
      at += limit / 4
      let beats = m.on(.tick(nowMicros: at))
      #expect(!beats.contains { if case .log(let line) = $0 { line.contains("missed") } else { false } })
      for worker: UInt8 in 1...3 {
        #expect(T.control(&m, from: worker, .heartbeat, at: at).allSatisfy { if case .reject = $0 { false } else { true } })
      }
    }
    #expect(T.feed(&m).count == 5)
    for _ in 0..<4 { _ = T.sink(&m, .result) }
    _ = Self.marker(&m, .trainEnd, sequence: 4)
    _ = T.feed(&m)
    for _ in 0..<2 { _ = T.sink(&m, .result) }
    _ = Self.marker(&m, .evalEnd, sequence: 7)
    for stage in 0..<2 {
      _ = T.totals(&m, stage: stage, .train, samples: 64, batches: 4)
      _ = T.totals(&m, stage: stage, .eval, samples: 32, batches: 2)
    }
    for worker: UInt8 in 1...2 { _ = T.control(&m, from: worker, .heartbeat, at: at) }  // (the helpers' clock is 3)
    _ = m.on(.tick(nowMicros: at + 1))
    #expect(m.layout.counts == [2, 1] && m.phase == .registering, "no figures yet: the first stage")
    let after = m.on(.tick(nowMicros: at + 2))
    #expect(!after.contains { if case .log(let line) = $0 { line.contains("missed") } else { false } }, "\(after)")
    #expect(m.registry.members.compactMap { $0?.identity[0] } == [1, 3, 2])
  }

  @Test func aWorkerLostWhileAnotherWaitsToJoinIsReplacedByTheJoiner() {
    var m = T.running(epochs: 2)
    _ = T.hello(&m, from: 3, stage: nil)
    let lost = m.on(.workerLost(WorkerFailure(stage: 1, reason: "exited", silentSeconds: 0)))
    #expect(Self.logs(lost).contains("stage 1 taken by a worker that was joining"), "\(lost)")
    #expect(m.registry.members.map { $0?.identity[0] } == [1, 3] && m.layout.counts == [1, 1])
  }

  /// Stage 1 on two replicas, all registered, ready and started.
  static func replicated(epochs: Int) -> SchedulerMachine {
    var config = T.machine(epochs: epochs).config
    config.stages[1].replicas = 2
    var m = SchedulerMachine(config: config, trainCount: 64, testCount: 32, resume: nil, seed: 7, registrationTimeout: .seconds(10))
    _ = m.on(.begin(nowMicros: 0))
    for (worker, stage) in [(1, 0), (2, 1), (3, 1)] { _ = T.hello(&m, from: UInt8(worker), stage: stage) }
    for worker: UInt8 in 1...3 { _ = T.control(&m, from: worker, .ready) }
    #expect(m.phase == .running)
    return m
  }

  @Test func aReplicaThatAsksToLeaveIsStoppedAtTheNextCut() throws {
    var m = Self.replicated(epochs: 2)
    let asked = T.control(&m, from: 3, .leave)
    #expect(Self.logs(asked).contains { $0.contains("stage 1 replica 1") && $0.contains("leaves at the next cut") }, "\(asked)")
    #expect(T.sent(asked).isEmpty, "it trains on until the cut")
    let last = T.control(&m, from: 2, .leave)
    #expect(T.sent(last).map { "\($0.to) \($0.kind)" } == ["2 STOP"], "the last replica leaves now: \(last)")
    #expect(T.feed(&m).count == 8, "a window of 6: epoch 0's batches and markers, then held")
    #expect(m.nextFeed == nil)
    for _ in 0..<4 { _ = T.sink(&m, .result) }
    for r in 0..<2 { _ = Self.marker(&m, .trainEnd, sequence: 4, replica: r) }  // a copy from each replica
    for _ in 0..<2 { _ = T.sink(&m, .result) }
    for r in 0..<2 { _ = Self.marker(&m, .evalEnd, sequence: 7, replica: r) }
    for (slot, stage) in [0, 1, 1].enumerated() {
      for (phase, samples, batches) in [(Phase.train, 64, 4), (.eval, 32, 2)] {
        let share = stage == 0 ? 1 : 2  // stage 1's replicas took half each
        var totals = PhaseTotals(stage: stage, epoch: 0, phase: phase)
        (totals.samples, totals.batches) = (samples / share, batches / share)
        var message = Message(kind: .stats, body: StatsBody(live: nil, totals: totals))
        message.job = m.run.id
        _ = m.on(.control(identity: [UInt8(slot + 1)], message, nowMicros: 4))
      }
    }
    #expect(m.epochsCompleted == 1)
    let cut = m.on(.tick(nowMicros: 5))
    #expect(T.sent(cut).map { "\($0.to) \($0.kind)" } == ["1 RESET", "2 RESET", "3 STOP"], "\(cut)")
    #expect(m.layout.counts == [1, 1] && m.config.stages[1].replicas == 1 && m.departed.map(\.identity) == [[3]])
    var bye = Message(kind: .bye)
    bye.job = m.run.id
    let said = m.on(.control(identity: [3], bye, nowMicros: 6))
    #expect(Self.logs(said) == ["h pid 3 left"] && !said.contains { if case .reject = $0 { true } else { false } })
    #expect(m.on(.workerLost(WorkerFailure(stage: 1, reason: "exited 0", silentSeconds: 0, pid: 3))).isEmpty, "its exit is no loss")
  }

  @Test func aJoinerIsToldWhyItCannotJoin() {
    var m = T.running(epochs: 2)
    let missing = T.hello(&m, from: 3, stage: 5)
    #expect(T.sent(missing).map(\.kind) == [.error])
    #expect(missing.contains { if case .reject(let reason, let detail) = $0 { reason == "late-hello" && detail.contains("stage 5 does not exist") } else { false } })
    var stopping = T.running()
    _ = stopping.on(.signal(15))
    #expect(T.sent(T.hello(&stopping, from: 3, stage: nil)).map(\.kind) == [.error], "draining: no more workers")
  }
}

@Suite("Scheduler machine: a lost replica")
struct SchedulerLostReplicaTests {
  typealias T = SchedulerMachineTests

  static func totals(_ m: inout SchedulerMachine, slot: Int, stage: Int, _ phase: Phase, samples: Int, batches: Int) {
    var totals = PhaseTotals(stage: stage, epoch: 0, phase: phase)
    (totals.samples, totals.batches) = (samples, batches)
    var message = Message(kind: .stats, body: StatsBody(live: nil, totals: totals))
    message.job = m.run.id
    _ = m.on(.control(identity: [UInt8(slot + 1)], message, nowMicros: 4))
  }

  /// One of stage 1's two replicas dies mid-epoch: every other worker hears DROP and the job
  /// goes on as it is — no reset, no cut, no replacement. The epoch closes once stage 0 (its
  /// sender) has said what the dead one handed on, and the accounting is exact.
  @Test func aDeadReplicaIsLeftOutAndTheJobGoesOn() {
    var m = SchedulerJoinTests.replicated(epochs: 2)
    #expect(T.feed(&m).count == 8, "epoch 0: 6 batches, 2 markers")
    let job = m.run.id
    let lost = m.on(.workerLost(WorkerFailure(stage: 1, reason: "exited 9", silentSeconds: 0, pid: 3)))
    #expect(T.sent(lost).map { "\($0.to) \($0.kind)" } == ["3 ERROR", "1 DROP", "2 DROP"], "\(lost)")
    #expect(!lost.contains(.vacancy(stage: 1)) && !lost.contains(.disconnectFeed))
    #expect(m.phase == .running && m.run.id == job && m.registry.members[2] == nil)
    #expect(m.recoveries.count == 1 && m.recoveries[0].rolledBack == false)
    #expect(m.on(.workerLost(WorkerFailure(stage: 1, reason: "exited 9", silentSeconds: 0, pid: 3))).isEmpty)
    for _ in 0..<4 { _ = T.sink(&m, .result) }
    _ = SchedulerJoinTests.marker(&m, .trainEnd, sequence: 4)  // the live replica's copy is all
    _ = T.feed(&m)
    for _ in 0..<2 { _ = T.sink(&m, .result) }
    _ = SchedulerJoinTests.marker(&m, .evalEnd, sequence: 7)
    Self.totals(&m, slot: 0, stage: 0, .train, samples: 64, batches: 4)
    Self.totals(&m, slot: 0, stage: 0, .eval, samples: 32, batches: 2)
    Self.totals(&m, slot: 1, stage: 1, .train, samples: 48, batches: 3)
    Self.totals(&m, slot: 1, stage: 1, .eval, samples: 32, batches: 2)
    #expect(m.epochsCompleted == 0, "the dead replica's sender has not said what it took")
    let entry = ReplicaCredit.Entry(epoch: 0, isEval: false, count: { var c = ReplicaCredit.Count(); c.batches = 1; c.samples = 16; return c }())
    var credit = Message(kind: .stats, body: StatsBody(live: nil, totals: nil, credit: ReplicaCredit(stage: 1, replica: 1, entries: [entry])))
    credit.job = m.run.id
    let closed = m.on(.control(identity: [1], credit, nowMicros: 5))
    #expect(m.epochsCompleted == 1, "\(closed)")
    let accounting = m.run.reports.first?.accounting
    #expect(accounting?.batchesFed == 4 && accounting?.batchesTrained == [4, 4], "\(String(describing: accounting))")
    #expect(accounting?.evalSamplesScored == [32, 32])
    // A worker that says HELLO later joins at the next cut, into the dead one's place.
    let joins = T.hello(&m, from: 4, stage: 1)
    #expect(SchedulerJoinTests.logs(joins).contains { $0.contains("joins stage 1 as replica 1") }, "\(joins)")
  }

  /// A second replica lost while the first one's credit is still awaited: the job goes back
  /// to the newest cut, one replica narrower, as before there was going on without one.
  @Test func aLostReplicaWhileACreditIsAwaitedRollsBack() {
    var config = T.machine(epochs: 2).config
    config.stages[1].replicas = 3
    var m = SchedulerMachine(config: config, trainCount: 64, testCount: 32, resume: nil, seed: 7, registrationTimeout: .seconds(10))
    _ = m.on(.begin(nowMicros: 0))
    for (worker, stage) in [(1, 0), (2, 1), (3, 1), (4, 1)] { _ = T.hello(&m, from: UInt8(worker), stage: stage) }
    for worker: UInt8 in 1...4 { _ = T.control(&m, from: worker, .ready) }
    _ = T.feed(&m)
    _ = m.on(.workerLost(WorkerFailure(stage: 1, reason: "exited 9", silentSeconds: 0, pid: 3)))
    #expect(m.phase == .running && m.run.owesCredits)
    let lost = m.on(.workerLost(WorkerFailure(stage: 1, reason: "exited 9", silentSeconds: 0, pid: 4)))
    #expect(T.sent(lost).map { "\($0.to) \($0.kind)" } == ["4 ERROR", "1 RESET", "2 RESET"], "\(lost)")
    #expect(SchedulerJoinTests.logs(lost).contains { $0.contains("stage 1 goes on with 1 replica, from the newest cut") })
    #expect(m.layout.counts == [1, 1] && m.config.stages[1].replicas == 1 && m.phase == .registering)
    _ = T.hello(&m, from: 1, stage: 0)
    #expect(T.hello(&m, from: 2, stage: 1).contains(.rollBack))
    let back = m.on(.rolledBack(ResumePoint(epochsDone: 0, checkpoints: [])))
    #expect(back.contains(.assignAll) && m.recoveries.count == 2)
  }

  /// The last replica of a stage dies: its slot waits for a replacement, as any stage's does.
  @Test func theLastReplicaIsReplaced() {
    var m = SchedulerJoinTests.replicated(epochs: 2)
    _ = m.on(.workerLost(WorkerFailure(stage: 0, reason: "exited 9", silentSeconds: 0, pid: 1)))
    #expect(m.layout.counts == [1, 2] && m.registry.members[0] == nil)
  }
}
