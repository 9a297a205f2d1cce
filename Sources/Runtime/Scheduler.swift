import Datasets
import Foundation
import Learning
import NN
import Telemetry
import Wire
import ZMQ

/// The coordinator of one training job: registers workers, assigns stages, feeds batches
/// with credit-based flow control, collects results, statistics and traces, ends epochs with
/// markers that flow down the pipeline, and stops the job cleanly.
public final class Scheduler {
  public enum Phase: Sendable { case registering, running, stopping, done }

  public struct Outcome: Sendable {
    public var reports: [EpochReport]
    /// Each stage's last word (peak memory, bytes sent, replay figures), by stage.
    public var byes: [Int: Bye]
    public var interrupted: Bool
    public var rejected: [String: Int]
    public var stageRejected: [Int: [String: Int]]
  }

  public let config: RunConfig
  public let directory: RunDirectory
  public let train: Dataset
  public let test: Dataset
  let log: @Sendable (String) -> Void
  let report: @Sendable (String) -> Void
  let live: Bool

  let context: Context
  let control: Socket
  let sink: Socket
  var feed: Socket?
  public private(set) var controlEndpoint = ""
  public private(set) var sinkEndpoint = ""
  public internal(set) var phase = Phase.registering
  /// The job's id on every message; a recovery retires it and takes a new one.
  public internal(set) var job: UInt32
  var jobs = JobFilter()
  /// What travels into each stage besides its input (stage 0's from the feed).
  let handoffs: [Handoff]
  /// How training images are moved before they are fed (`data.augment`).
  let augmentation: Augmentation?

  var registry: Registry
  var plan: FeedPlan
  let maxInFlight: Int
  var inFlight = 0
  var sequence: UInt64 = 0
  var pendingFeed: [[UInt8]]?
  var ledgers: [Int: EpochLedger] = [:]
  var reports: [EpochReport] = []
  var liveStats: [LiveStats?]
  var rejections: Rejections
  /// Messages the scheduler refused, by reason.
  var rejected: [String: Int] { rejections.counts }
  var byes: [Int: Bye] = [:]
  /// Workers' trace chunks go straight to disk as they arrive, one event a line, so a long
  /// run's memory stays flat; `trace.json` is assembled from this file at the end.
  lazy var traceSpool = TraceSpool(path: "\(directory.path)/trace.events.jsonl")
  var schedulerTrace = TraceRecorder(pid: 0, capacity: 50_000)
  var originMicros: Int64 = 0
  var lastHeartbeatMicros: Int64 = 0
  var lastLiveMicros: Int64 = 0
  var liveLinesShown = 0
  var interrupted = false
  /// Called with each finished epoch; returning true drains and stops the job (benchmarks).
  public var onEpoch: ((EpochReport) -> Bool)?
  var stopAfterEpoch = false
  /// Training batches fed per epoch (to count what a failure costs).
  var trainBatchesFed: [Int: Int] = [:]
  /// Evaluation samples fed per epoch (the other half of `EpochReport.accounting`).
  var evalSamplesFed: [Int: Int] = [:]
  /// Worker failures recovered from, for `run.json`.
  public var recoveries: [Recovery] = []
  /// Called with a stage whose worker died: start a replacement (the launcher spawns one,
  /// `--on-vacancy` runs a command); without it, whoever registers next takes the stage.
  public var onVacancy: ((Int) throws -> Void)?
  /// Between a failure and the next START: when it was noticed.
  var recoveryNoticed: ContinuousClock.Instant?
  /// When training started (START) and when the last epoch closed, on this process's clock.
  public private(set) var startedAt: ContinuousClock.Instant?
  public internal(set) var lastEpochAt: ContinuousClock.Instant?

  /// CURVE: the scheduler's keys, and the handler that checks every peer's key.
  public let curveKeys: CurveKeyPair?
  var zap: ZAPHandler?
  /// Keys allowed besides `security.allowedWorkerKeys` (the launcher's own workers).
  var extraWorkerKeys: Set<String> = []
  /// Bind a non-loopback address without CURVE (`--insecure`).
  public var allowInsecure = false

  /// Resuming: where the run continues (nil for a fresh run).
  var resume: ResumePoint?
  var firstEpoch: Int { resume?.epochsDone ?? 0 }

  public init(
    config: RunConfig, directory: RunDirectory, train: Dataset, test: Dataset, live: Bool, resume: ResumePoint? = nil,
    log: @escaping @Sendable (String) -> Void, report: @escaping @Sendable (String) -> Void
  ) throws {
    self.resume = resume
    (self.config, self.directory, self.train, self.test, self.live, self.log, self.report) =
      (config, directory, train, test, live, log, report)
    rejections = Rejections(log: log)
    // Check every stage's shapes here, before any process is asked to build one.
    handoffs = config.handoffs(inputShapes: try config.blueprints(sampleShape: train.sampleShape, classes: train.classes).map(\.body.inputShape))
    augmentation = config.augmentation
    context = try Context()
    control = try Socket(context, .router)
    try control.setMaximumMessageSize(Protocol.maxControlFrameBytes)
    sink = try Socket(context, .pull)
    try sink.setMaximumMessageSize(Protocol.maxFrameBytes)
    registry = Registry(stageCount: config.stages.count)
    liveStats = Array(repeating: nil, count: config.stages.count)
    plan = Self.plan(config: config, train: train, test: test, from: resume)
    // e2e: one batch (its M micro-batches) in flight; the stages' update locking does the rest.
    maxInFlight =
      config.method == .e2e ? plan.microBatches
      : config.schedule == .lockstep ? 1 : (config.daemon.maxInFlight > 0 ? config.daemon.maxInFlight : 2 * config.stages.count)
    job = Self.newJobID()
    do {
      curveKeys = config.security.curve ? try KeyFile.keyPair(config.security.schedulerKey) : nil
    } catch {
      throw RuntimeError("security.schedulerKey: \(error)")
    }
  }

  deinit { zap?.stop() }

  var allowedWorkerKeys: Set<String> { Set(config.security.allowedWorkerKeys).union(extraWorkerKeys) }

  /// Lets workers with these public keys join too (the launcher's, made per run).
  public func allowWorkers(_ keys: [String]) {
    extraWorkerKeys.formUnion(keys)
    zap?.allow(allowedWorkerKeys)
  }

  /// What is fed, in order, from `resume` on (from the start when nil).
  static func plan(config: RunConfig, train: Dataset, test: Dataset, from resume: ResumePoint?) -> FeedPlan {
    let trainOrder = self.trainOrder(config: config, train: train)
    let evalOrder = BatchOrder(count: test.count, batchSize: config.training.evalBatchSize, shuffle: false, seed: 0)
    // `sequential`: one phase of training.epochs per stage, each training only that stage.
    let phases = config.schedule == .sequential ? config.stages.count : 1
    return FeedPlan(
      trainOrder: trainOrder, evalOrder: evalOrder, epochs: config.training.epochs * phases,
      microBatches: config.method == .e2e ? config.daemon.microBatches : 1,
      epochsPerPhase: config.training.epochs, startEpoch: resume?.epochsDone ?? 0, startBatch: resume?.batchesDone ?? 0,
      checkpointEvery: config.daemon.checkpointEverySteps)
  }

  static func trainOrder(config: RunConfig, train: Dataset) -> BatchOrder {
    BatchOrder(count: train.count, batchSize: config.training.batchSize, shuffle: true, seed: config.seed)
  }

  /// Where the run in `runDirectory` continues (`--resume`), with the directory rewound to it.
  public static func resumePoint(of runDirectory: String, config: RunConfig, train: Dataset) throws -> ResumePoint {
    let perEpoch = trainOrder(config: config, train: train).batchesPerEpoch
    let point = try ResumePoint.find(in: runDirectory, stageCount: config.stages.count, batchesPerEpoch: perEpoch)
    try point.rewind(runDirectory, stageCount: config.stages.count, batchesPerEpoch: perEpoch)
    return point
  }

  /// The control endpoint as workers elsewhere reach it (the bound one may be 0.0.0.0).
  public var advertisedControlEndpoint: String { "tcp://\(advertisedHost(bind: config.daemon.bind)):\(control.boundPort)" }

  static func newJobID() -> UInt32 {
    var rng = SeededGenerator(seed: UInt64(bitPattern: WallClock.micros()) ^ UInt64(getpid()))
    return UInt32(truncatingIfNeeded: rng.next()) | 1
  }

  /// Binds the control and sink endpoints on the configured interface.
  public func bind() throws {
    let host = config.daemon.bind
    if let keys = curveKeys {
      zap = try SocketRecipes.secureServers(
        [control, sink], keys: keys, context: context, allowed: allowedWorkerKeys, who: "on security.allowedWorkerKeys", log: log)
    }
    try checkExposure(
      bind: host, secured: curveKeys != nil, insecure: allowInsecure,
      fix: "set security.curve with a key from `stagewise keygen`")
    try control.bind("tcp://\(host):\(config.daemon.controlPort == 0 ? "*" : String(config.daemon.controlPort))")
    controlEndpoint = control.lastEndpoint
    try sink.setHighWaterMarks(send: Int32(config.daemon.highWaterMark), receive: Int32(config.daemon.highWaterMark))
    try sink.bind("tcp://\(host):*")
    sinkEndpoint = "tcp://\(advertisedHost(bind: host)):\(sink.boundPort)"  // the last stage connects here
  }

  var heartbeatMicros: Int64 { Int64(config.daemon.heartbeatMilliseconds) * 1000 }
  var stageCount: Int { config.stages.count }

  // MARK: - Run

  /// Seconds since stage `stage` was last heard from.
  public func silentSeconds(stage: Int) -> Double {
    registry.members[stage].map { Double(WallClock.micros() - $0.lastHeardMicros) / 1e6 } ?? 0
  }

  /// Training batches fed in epochs at or after `epoch`, and batches in flight now.
  public func batchesFed(since epoch: Int) -> (fed: Int, inFlight: Int) {
    (trainBatchesFed.filter { $0.key >= epoch }.values.reduce(0, +), inFlight)
  }

  /// Runs the job to the end, recovering from worker failures (`daemon.restarts`). `tick`
  /// is called every loop turn (the launcher watches its children there) and may throw.
  public func run(registrationTimeout: Duration = .seconds(300), tick: (Phase) throws -> Void = { _ in }) throws -> Outcome {
    log("scheduler for job \(job) listening on \(controlEndpoint); waiting for \(stageCount) workers")
    do {
      var failure: WorkerFailure?
      while true {
        do {
          if let failure {
            try recover(from: failure, timeout: registrationTimeout, tick: tick)
          } else {
            try register(timeout: registrationTimeout, tick: tick)
          }
          try start()
          try feedLoop(tick: tick)
          break
        } catch let next as WorkerFailure where recoveries.count < config.daemon.restarts {
          failure = next
        }
      }
    } catch {
      phase = .stopping
      try? writeManifest(state: "failed", detail: "\(error)")
      // A dead stage says no BYE: wait only for the others, who save their weights.
      stopWorkers(reason: "the scheduler failed: \(error)", dead: (error as? WorkerFailure).map { [$0.stage] } ?? [])
      throw error
    }
    phase = .stopping
    stopWorkers(reason: interrupted ? "interrupted" : "finished")
    try writeTrace()
    // A finished run whose final weights did not all reach the disk has not finished: say so.
    let unsaved = byes.keys.sorted().compactMap { byes[$0]?.saveError }
    if !interrupted, !unsaved.isEmpty {
      let detail = unsaved.joined(separator: "; ") + "; the epoch \(firstEpoch + reports.count) checkpoints hold the same weights: free space or fix the run directory's permissions, then `stagewise launch --resume \(directory.path)`"
      try writeManifest(state: "failed", detail: detail)
      throw RuntimeError(detail)
    }
    try writeManifest(state: interrupted ? "interrupted" : "finished", detail: unsaved.isEmpty ? nil : unsaved.joined(separator: "; "))
    phase = .done
    return Outcome(
      reports: reports, byes: byes, interrupted: interrupted, rejected: rejected,
      stageRejected: byes.mapValues(\.rejected))
  }

  func register(timeout: Duration, tick: (Phase) throws -> Void) throws {
    let deadline = ContinuousClock.now + timeout
    while !registry.isFull || !registry.allReady {
      try keepAlive()
      try tick(.registering)
      if let signal = Signals.stopRequested { throw RuntimeError("interrupted by signal \(signal) while waiting for workers") }
      guard ContinuousClock.now < deadline else {
        let missing = registry.members.indices.filter { registry.members[$0] == nil || registry.members[$0]?.ready == false }
        throw RuntimeError("stages \(missing.map { "\($0)" }.joined(separator: ", ")) never became ready within \(timeout): start a worker for each (`stagewise worker --scheduler \(controlEndpoint)`)")
      }
      if try !Socket.pollReadable([control], timeoutMilliseconds: 100).isEmpty { try serviceControl() }
    }
  }

  /// Everyone is ready: connect the feed to stage 1 and say START.
  func start() throws {
    let first = registry.members[0]!.hello
    // Sends never wait: a full queue at stage 0 means try again next turn.
    feed = try SocketRecipes.push(
      context, to: first.dataEndpoint, curve: curveKeys.map { ($0, first.publicKey ?? "") },
      highWaterMark: config.daemon.highWaterMark, sendTimeoutMilliseconds: 0)
    let now = WallClock.micros()
    for stage in 0..<stageCount {
      registry.heard(from: stage, atMicros: now)  // silence is measured from START
      try sendControl(to: stage, Message(kind: .start))
    }
    phase = .running
    startedAt = ContinuousClock.now
    if let noticed = recoveryNoticed {
      recoveries[recoveries.count - 1].recoverySeconds = (ContinuousClock.now - noticed).seconds
      recoveryNoticed = nil
    }
    lastLiveMicros = WallClock.micros()
    try writeManifest(state: "running", detail: nil)
    log("all \(stageCount) stages ready; training (\(config.schedule.rawValue), at most \(maxInFlight) batches in flight)")
  }

  func feedLoop(tick: (Phase) throws -> Void) throws {
    let epochs = plan.epochs - firstEpoch
    var drainDeadline: ContinuousClock.Instant?
    while reports.count < epochs {
      try tick(.running)
      if let signal = Signals.stopRequested, drainDeadline == nil {
        log("signal \(signal): draining \(inFlight) batches in flight, then saving every stage")
        interrupted = true
        drainDeadline = ContinuousClock.now + .seconds(60)
      }
      if stopAfterEpoch, drainDeadline == nil { drainDeadline = ContinuousClock.now + .seconds(60) }
      if let drainDeadline {
        if inFlight == 0 { break }
        guard ContinuousClock.now < drainDeadline else {
          log("\(inFlight) batches still in flight after 60 s; stopping anyway")
          break
        }
      } else {
        try feedWhileCredits()
      }
      let ready = try Socket.pollReadable([control, sink], timeoutMilliseconds: 20)
      if ready.contains(1) { try serviceSink() }
      if ready.contains(0) { try serviceControl() }
      try keepAlive()
      showLive()
    }
    clearLive()
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
