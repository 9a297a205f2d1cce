import Learning
import NN
import Telemetry
import Wire

/// The scheduler's decisions without sockets, files or clocks it is not given: registration,
/// assignment, START, feeding credits, markers and epochs, evaluation, heartbeats, recovery and
/// stopping, as `on(event) -> [Action]`. The job's state is one `JobRun`, replaced whole when a
/// worker is lost; recovery is an event like any other. `Scheduler` is the loop that turns
/// sockets and time into events and does the actions.
///
///     registering ──every stage ready──▶ running ──last epoch / drained──▶ stopping ──BYEs──▶ done
///          ▲                               │
///          └──────── worker lost ──────────┘   (beyond daemon.restarts, or fatal: stopping)
public struct SchedulerMachine: Sendable {
  public enum Phase: Sendable { case registering, running, stopping, done }

  public enum Event: Sendable {
    /// Waiting for workers begins.
    case begin(nowMicros: Int64)
    /// A readable control message from the peer with this routing identity.
    case control(identity: [UInt8], Message, nowMicros: Int64)
    /// A readable message at the sink (results and markers from the last stage).
    case sink(Message, nowMicros: Int64)
    /// The feed took `run.nextFeed`.
    case fed(nowMicros: Int64)
    case tick(nowMicros: Int64)
    case signal(Int32)
    /// Drain what is in flight and stop (a benchmark has what it needs).
    case stopAfterEpoch
    /// A worker died or fell silent (seen here, or by whoever watches the processes).
    case workerLost(WorkerFailure)
    /// The feed's count of what a dead replica of stage 0 had taken (the answer to
    /// `.dropFeedReplica`).
    case credited(ReplicaCredit)
    /// The run directory was rewound to this point (the answer to `.rollBack`).
    case rolledBack(ResumePoint)
    /// Something outside the protocol failed (a save, a socket, a spawn): the run fails.
    case fatal(String, dead: Set<Int> = [])
  }

  public enum Action: Sendable, Equatable {
    case send(to: [UInt8], Message)
    /// Connect the feed to stage 0 at these workers' data endpoints (its replicas).
    case connectFeed([Hello])
    /// A replica of stage 0 took this batch of the feed (its ACK at the sink).
    case acknowledged(Message)
    case disconnectFeed
    /// Replica `r` of stage 0 died: the feed sends what it held to the others and answers
    /// `.credited` with what it had taken.
    case dropFeedReplica(Int)
    /// Send every stage its ASSIGN for `run` (the registry says who holds which stage).
    case assignAll
    /// Find the newest cut every stage checkpointed, rewind the run directory to it and
    /// answer `.rolledBack`.
    case rollBack
    /// Training started (or started again after a recovery).
    case started
    /// Epoch `epoch` of the plan closed (the report counts epochs within its phase).
    case epochClosed(EpochReport, epoch: Int)
    case manifest(state: String, detail: String?)
    /// Ask for a worker for this stage (the launcher spawns one).
    case vacancy(stage: Int)
    case reject(reason: String, detail: String)
    case log(String)
    case trace([TraceEvent])
  }

  /// The job's config; a stage's replicas grow when a worker joins.
  public internal(set) var config: RunConfig
  let trainCount: Int, testCount: Int
  var registrationTimeout: Duration
  /// CURVE is on: a HELLO must carry the worker's public key.
  let requiresKeys: Bool
  public internal(set) var phase = Phase.registering
  public internal(set) var registry: Registry
  public internal(set) var run: JobRun
  var jobs = JobFilter()
  /// Worker failures recovered from, for `run.json` (earlier runs' too when resumed).
  public var recoveries: [Recovery] = []
  /// Each stage's last word.
  public internal(set) var byes: [Int: Bye] = [:]
  public internal(set) var interrupted = false
  /// Why the run failed, once it has.
  public internal(set) var failure: String?
  /// Where workers reach the scheduler (for the sentences).
  var controlEndpoint = ""
  private var ids: SeededGenerator
  /// Registering: give up; draining: stop anyway; stopping: stop waiting for BYEs.
  var deadline = Int64.max
  var draining = false
  var expectedByes: [Int] = []
  var lastHeartbeatMicros: Int64 = 0
  /// Between a failure and the next START: when it was noticed (a rollback is owed).
  var recoveryNoticedMicros: Int64?
  /// Replicas joining and leaving at the next cut (`SchedulerMachine+Elastic`), those that
  /// left, and whether the run directory is rewound to the cut before the next ASSIGN.
  var changes: CutChanges?
  var departed: [Registry.Member] = []
  var rewindOwed = false
  var now: Int64 = 0

  public init(
    config: RunConfig, trainCount: Int, testCount: Int, resume: ResumePoint?, seed: UInt64,
    registrationTimeout: Duration = .seconds(300)
  ) {
    (self.config, self.trainCount, self.testCount) = (config, trainCount, testCount)
    (self.registrationTimeout, requiresKeys) = (registrationTimeout, config.security.curve)
    registry = Registry(layout: ReplicaLayout(config))
    ids = SeededGenerator(seed: seed)
    run = JobRun(
      id: 0, config: config, trainCount: trainCount, testCount: testCount, resume: resume)
    run = newRun(resume: resume)
  }

  var stageCount: Int { config.stages.count }
  var layout: ReplicaLayout { registry.layout }
  var heartbeatMicros: Int64 { Int64(config.daemon.heartbeatMilliseconds) * 1000 }
  public var epochsCompleted: Int { run.firstEpoch + run.reports.count }
  /// What to feed now: the plan's next item while running, credits allowing, not draining.
  public var nextFeed: FeedPlan.Item? {
    phase == .running && !draining && changes?.heldAt == nil ? run.nextFeed : nil
  }

  mutating func newRun(resume: ResumePoint?, fed: [Int: Int] = [:]) -> JobRun {
    let id = UInt32(truncatingIfNeeded: ids.next()) | 1
    return JobRun(
      id: id, config: config, trainCount: trainCount, testCount: testCount, resume: resume,
      trainBatchesFed: fed)
  }

  public mutating func on(_ event: Event) -> [Action] {
    switch event {
    case .begin(let now):
      self.now = now
      deadline = now + registrationTimeout.micros
      return []
    case .control(let identity, let message, let now):
      self.now = now
      return onControl(message, from: identity)
    case .sink(let message, let now):
      self.now = now
      return onSink(message)
    case .fed(let now):
      self.now = now
      let (item, sequence) = (run.plan.peek, run.sequence)
      run.fed(atMicros: now)
      holdForChanges(after: item, sequence: sequence)
      return []
    case .tick(let now):
      self.now = now
      return onTick()
    case .signal(let signal): return onSignal(signal)
    case .stopAfterEpoch:
      guard phase == .running, !draining else { return [] }
      (draining, deadline) = (true, now + 60_000_000)
      return []
    case .workerLost(let failure): return lose(failure)
    case .credited(let credit): return takeCredit(credit)
    case .rolledBack(let point): return rolledBack(to: point)
    case .fatal(let reason, let dead): return fail(reason, dead: dead)
    }
  }

  /// A control message stamped with this job's id, to a slot's worker (nothing if vacant).
  func send(_ message: Message, to slot: Int) -> [Action] {
    registry.members[slot].map { [send(message, toIdentity: $0.identity)] } ?? []
  }

  /// A control message stamped with this job's id, to whoever has this routing identity (a
  /// worker not or no longer in a slot: refused, or waiting to join).
  func send(_ message: Message, toIdentity identity: [UInt8]) -> Action {
    var message = message
    message.job = run.id
    return .send(to: identity, message)
  }

  /// A TRACE message's events, for the merged trace (nothing if unreadable).
  func traced(_ message: Message) -> [Action] {
    (try? message.body(TraceChunk.self)).map { [.trace($0.events)] } ?? []
  }

  func sendAll(_ message: Message) -> [Action] {
    registry.members.indices.flatMap { send(message, to: $0) }
  }

  // MARK: - Time and signals

  private mutating func onTick() -> [Action] {
    switch phase {
    case .registering, .running:
      var actions: [Action] = []
      if now - lastHeartbeatMicros >= heartbeatMicros {
        lastHeartbeatMicros = now
        let beat = Heartbeat(sentMicros: now, echoMicros: nil, schedulerMicros: now)
        actions += sendAll(Message(kind: .heartbeat, body: beat)) + beatJoiners(beat)
      }
      let limit = Int64(config.daemon.liveness) * heartbeatMicros
      if let slot = registry.silent(nowMicros: now, limitMicros: limit).first,
        let member = registry.members[slot]
      {
        let reason =
          "\(member.hello.host) pid \(member.hello.pid) missed \(config.daemon.liveness) heartbeats"
        let silent = Double(now - member.lastHeardMicros) / 1e6
        let failure = WorkerFailure(
          stage: layout.place(ofSlot: slot).stage, reason: reason, silentSeconds: silent, slot: slot
        )
        return actions + lose(failure)
      }
      return actions + (phase == .registering ? registrationOverdue() : drained() + changeAtCut())
    case .stopping:
      guard now >= deadline else { return [] }
      return doneStopping()
    case .done: return []
    }
  }

  private mutating func registrationOverdue() -> [Action] {
    guard now >= deadline else { return [] }
    let missing = registry.members.indices.filter { registry.members[$0]?.ready != true }
    let stages = Set(missing.map { layout.place(ofSlot: $0).stage }).sorted().map { "\($0)" }
      .joined(separator: ", ")
    return fail(
      "stages \(stages) never became ready within \(registrationTimeout): start a worker for "
        + "each (`stagewise worker --scheduler \(controlEndpoint)`)")
  }

  /// Draining: stop once nothing is in flight, or at the deadline anyway.
  private mutating func drained() -> [Action] {
    guard draining else { return [] }
    if run.inFlight == 0 { return stop(reason: interrupted ? "interrupted" : "finished") }
    guard now >= deadline else { return [] }
    return [.log("\(run.inFlight) batches still in flight after 60 s; stopping anyway")]
      + stop(reason: interrupted ? "interrupted" : "finished")
  }

  private mutating func onSignal(_ signal: Int32) -> [Action] {
    switch phase {
    case .registering: return fail("interrupted by signal \(signal) while waiting for workers")
    case .running:
      guard !draining else { return [] }
      (interrupted, draining, deadline) = (true, true, now + 60_000_000)
      return [
        .log(
          "signal \(signal): draining \(run.inFlight) batches in flight, then saving every stage")
      ]
    case .stopping, .done: return []
    }
  }

  // MARK: - Stopping

  /// STOP to every stage but the dead; BYEs are awaited for a bounded time.
  mutating func stop(reason: String, dead: Set<Int> = []) -> [Action] {
    phase = .stopping
    expectedByes = registry.members.indices.filter {
      registry.members[$0] != nil && !dead.contains($0)
    }
    deadline = now + 30_000_000
    let actions =
      turnAwayJoiners("ended before it could join (\(reason))")
      + expectedByes.flatMap { send(Message(kind: .stop, body: StopBody(reason: reason)), to: $0) }
    return actions + (expectedByes.allSatisfy { byes[$0] != nil } ? doneStopping() : [])
  }

  mutating func doneStopping() -> [Action] {
    phase = .done
    let missing = expectedByes.filter { byes[$0] == nil }
    return missing.isEmpty ? [] : [.log("no BYE from stages \(missing) within 30 s")]
  }

  /// The run fails: the record says so, the survivors save and leave.
  mutating func fail(_ reason: String, dead: Set<Int> = []) -> [Action] {
    guard phase != .stopping, phase != .done else {
      return [.log("after the stop: \(reason)")]
    }
    failure = reason
    return [.manifest(state: "failed", detail: reason)]
      + stop(reason: "the scheduler failed: \(reason)", dead: dead)
  }
}
