import Datasets
import Foundation
import Learning
import Memory
import Telemetry
import Wire
import ZMQ

/// The coordinator of one training job, as a loop around `SchedulerMachine`: one poll of the
/// control and sink sockets a turn, every message and the passing time turned into events,
/// the machine's actions done (sends, the feed, ASSIGN, rollbacks, the run directory's files).
public final class Scheduler {
  public typealias Phase = SchedulerMachine.Phase

  public struct Outcome: Sendable {
    public var reports: [EpochReport]
    /// Each stage's last word (peak memory, bytes sent, replay figures), by stage.
    public var byes: [Int: Bye]
    public var interrupted: Bool
    public var rejected: [String: Int]
    public var stageRejected: [Int: [String: Int]]
  }

  public let directory: RunDirectory
  var machine: SchedulerMachine
  let source: FeedSource
  let sockets: SchedulerSockets
  let log: @Sendable (String) -> Void
  let report: @Sendable (String) -> Void
  var terminal: LiveTerminal
  var rejections: Rejections
  /// Workers' trace chunks go straight to disk as they arrive, one event a line, so a long
  /// run's memory stays flat; `trace.json` is assembled from this file at the end.
  let traceSpool: TraceSpool
  /// The encoded head of the plan, kept while stage 0's queue is full (by job and sequence),
  /// with the replicas of stage 0 it is still to go to (a batch one, a marker all).
  var pendingFeed: (job: UInt32, sequence: UInt64, frames: [[UInt8]], to: [Int])?
  /// Which replica of stage 0 takes each batch (nil: it has one).
  var feedRouter: ReplicaRouter?
  /// Called with each finished epoch; returning true drains and stops the job (benchmarks).
  public var onEpoch: ((EpochReport) -> Bool)?
  /// Called with a stage whose worker died: start a replacement (the launcher spawns one,
  /// `--on-vacancy` runs a command); without it, whoever registers next takes the stage.
  public var onVacancy: ((Int) throws -> Void)?
  /// When training started (START) and when the last epoch closed, on this process's clock.
  public internal(set) var startedAt: ContinuousClock.Instant?
  public internal(set) var lastEpochAt: ContinuousClock.Instant?

  public init(
    config: RunConfig, directory: RunDirectory, train: Dataset, test: Dataset, live: Bool,
    resume: ResumePoint? = nil, log: @escaping @Sendable (String) -> Void,
    report: @escaping @Sendable (String) -> Void
  ) throws {
    (self.directory, self.log, self.report) = (directory, log, report)
    source = try FeedSource(config: config, train: train, test: test)
    sockets = try SchedulerSockets(config: config)
    let seed = UInt64(bitPattern: WallClock.micros()) ^ UInt64(getpid())
    machine = SchedulerMachine(
      config: config, trainCount: train.count, testCount: test.count, resume: resume, seed: seed)
    terminal = LiveTerminal(live: live)
    rejections = Rejections(log: log)
    traceSpool = TraceSpool(path: "\(directory.path)/trace.events.jsonl")
  }

  public var config: RunConfig { machine.config }
  /// Whether the worker with this pid left the job at a cut (a replica that was let go).
  public func left(pid: Int32) -> Bool { machine.hasLeft(pid: pid) }
  public var train: Dataset { source.train }
  public var test: Dataset { source.test }
  public var phase: Phase {
    get { machine.phase }
    set { machine.phase = newValue }
  }
  /// The job's id on every message; a recovery retires it and takes a new one.
  public var job: UInt32 { machine.run.id }
  var registry: Registry {
    get { machine.registry }
    set { machine.registry = newValue }
  }
  /// Worker failures recovered from, for `run.json`.
  public var recoveries: [Recovery] {
    get { machine.recoveries }
    set { machine.recoveries = newValue }
  }
  /// Messages the scheduler refused, by reason.
  var rejected: [String: Int] { rejections.counts }
  public var controlEndpoint: String { sockets.controlEndpoint }
  public var curveKeys: CurveKeyPair? { sockets.curveKeys }
  /// Bind a non-loopback address without CURVE (`--insecure`).
  public var allowInsecure: Bool {
    get { sockets.allowInsecure }
    set { sockets.allowInsecure = newValue }
  }
  /// The control endpoint as workers elsewhere reach it (the bound one may be 0.0.0.0).
  public var advertisedControlEndpoint: String {
    "tcp://\(advertisedHost(bind: config.daemon.bind)):\(sockets.control.boundPort)"
  }

  /// Lets workers with these public keys join too (the launcher's, made per run).
  public func allowWorkers(_ keys: [String]) { sockets.allowWorkers(keys) }

  /// Binds the control and sink endpoints on the configured interface.
  public func bind() throws { try sockets.bind(config.daemon, log: log) }

  /// Where the run in `runDirectory` continues (`--resume`), with the directory rewound to it.
  public static func resumePoint(of runDirectory: String, config: RunConfig, train: Dataset)
    throws -> ResumePoint
  {
    let perEpoch = JobRun.trainOrder(config: config, trainCount: train.count).batchesPerEpoch
    let stages = config.stages.count
    let point = try ResumePoint.find(
      in: runDirectory, stageCount: stages, batchesPerEpoch: perEpoch)
    try point.rewind(runDirectory, stageCount: stages, batchesPerEpoch: perEpoch)
    return point
  }

  /// Seconds since the worker with process id `pid` was last heard from.
  public func silentSeconds(pid: Int32) -> Double {
    let member = registry.members.first { $0?.hello.pid == pid } ?? nil
    return member.map { Double(WallClock.micros() - $0.lastHeardMicros) / 1e6 } ?? 0
  }

  // MARK: - The loop

  /// Runs the job to the end, recovering from worker failures (`daemon.restarts`). `watch` is
  /// asked every turn whether a worker was lost (the launcher watches its children there).
  public func run(
    registrationTimeout: Duration = .seconds(300), watch: (Phase) -> WorkerFailure? = { _ in nil }
  ) throws -> Outcome {
    log(
      "scheduler for job \(job) listening on \(controlEndpoint); waiting for "
        + "\(config.stages.count) workers"
    )
    (machine.registrationTimeout, machine.controlEndpoint) = (registrationTimeout, controlEndpoint)
    try apply(.begin(nowMicros: WallClock.micros()))
    while machine.phase != .done { turn(watch: watch) }
    terminal.clear()
    return try finish()
  }

  /// One turn: signals, the watcher, the feed, one poll, the messages, the time.
  func turn(watch: (Phase) -> WorkerFailure?) {
    do {
      if let signal = Signals.stopRequested { try apply(.signal(signal)) }
      if let failure = watch(machine.phase) { try apply(.workerLost(failure)) }
      try feedWhileCredits()
      let wait = machine.phase == .running ? 20 : 100
      let ready = try Socket.pollReadable(
        [sockets.control, sockets.sink], timeoutMilliseconds: wait)
      if ready.contains(1) { try receiveSink() }
      if ready.contains(0) { try receiveControl() }
      try apply(.tick(nowMicros: WallClock.micros()))
      terminal.show(machine)
    } catch {
      apply(failing: error)
    }
  }

  /// The machine's answer to `event`, done in order.
  func apply(_ event: SchedulerMachine.Event) throws {
    for action in machine.on(event) { try perform(action) }
  }

  /// The run fails with `error`: every action of the failure is tried, whatever fails.
  func apply(failing error: any Error) {
    for action in machine.on(.fatal("\(error)")) {
      do { try perform(action) } catch { log("while failing: \(error)") }
    }
  }

  /// Feeds stage 0 while the credits last and its queues take messages: a batch to the
  /// replica the router picks (kept until it is acknowledged), a marker to every replica once
  /// they have acknowledged everything before it; first, what a dead replica held.
  func feedWhileCredits() throws {
    try feedRouter?.resend(atMicros: WallClock.micros()) { r, batch in
      try sockets.feeds[r].trySend(batch.frames)
    }
    while let item = machine.nextFeed, !sockets.feeds.isEmpty {
      if !item.isBatch, feedRouter?.isDrained == false { return }
      let run = machine.run
      if pendingFeed?.job != run.id || pendingFeed?.sequence != run.sequence {
        let to =
          item.isBatch
          ? [feedRouter?.choose() ?? 0] : feedRouter?.live ?? Array(sockets.feeds.indices)
        pendingFeed = (run.id, run.sequence, source.frames(for: item, of: run), to)
      }
      let pending = pendingFeed!
      let refused = try pending.to.filter { !(try sockets.feeds[$0].trySend(pending.frames)) }
      guard refused.isEmpty else {  // full: try next turn
        pendingFeed!.to = refused
        return
      }
      if let batch = Self.routed(item, pending.frames) {
        feedRouter?.sent(
          run.sequence, to: pending.to[0], atMicros: WallClock.micros(), batch: batch)
      }
      pendingFeed = nil
      try apply(.fed(nowMicros: WallClock.micros()))
    }
  }

  /// What the feed's router keeps of a batch until it is acknowledged.
  static func routed(_ item: FeedPlan.Item, _ frames: [[UInt8]]) -> ReplicaRouter.Sent? {
    switch item {
    case .train(let epoch, let indices, _, _, _):
      ReplicaRouter.Sent(epoch: epoch, isEval: false, samples: indices.count, frames: frames)
    case .eval(let epoch, let indices):
      ReplicaRouter.Sent(epoch: epoch, isEval: true, samples: indices.count, frames: frames)
    case .marker: nil
    }
  }

  /// Replica `r` of stage 0 died: what it held goes to the others, and the machine hears what
  /// it had taken.
  func dropFeedReplica(_ r: Int) throws {
    guard feedRouter?.isDropped(r) == false else { return }
    let back = feedRouter!.drop(r)
    if pendingFeed?.to.contains(r) == true {
      pendingFeed!.to.removeAll { $0 == r }
      if pendingFeed!.to.isEmpty { pendingFeed = nil }  // a batch: chosen again
    }
    log("stage 0 replica \(r) died: \(back) batches it held go to replicas \(feedRouter!.live)")
    try apply(.credited(ReplicaCredit(stage: 0, replica: r, entries: feedRouter!.tally(of: r))))
    try feedWhileCredits()
  }

  func receiveSink() throws {
    while let frames = try sockets.sink.tryReceive() {
      guard let message = rejections.accept(frames, on: "sink") else { continue }
      try apply(.sink(message, nowMicros: WallClock.micros()))
    }
  }

  func receiveControl() throws {
    while var frames = try sockets.control.tryReceive() {
      guard frames.count >= 2 else {
        rejections.add("no-identity", "control message without a routing identity")
        continue
      }
      let identity = frames.removeFirst()
      let accepted = rejections.accept(frames, on: "control") { error in
        guard case .versionMismatch = error else { return }  // tell the peer why, in its words
        let refusal = Message(kind: .error, body: ErrorBody(message: "refused: \(error)"))
        try? sockets.control.send([identity] + refusal.encode())
      }
      if let message = accepted { try handleControl(message, from: identity) }
    }
  }

  func handleControl(_ message: Message, from identity: [UInt8]) throws {
    try apply(.control(identity: identity, message, nowMicros: WallClock.micros()))
  }
}

/// One line of `eval.jsonl`: a stage's head on the test set after an epoch.
public struct EvalLine: Codable, Sendable {
  public var epoch: Int
  public var stage: Int
  public var accuracy: Double
  public var loss: Double
}

/// The JSON object Perfetto and chrome://tracing open.
public struct ChromeTrace: Codable, Sendable {
  public var traceEvents: [TraceEvent]
  public var displayTimeUnit: String
}
