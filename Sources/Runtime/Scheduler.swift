import Data
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
  /// The control port bound (the one the system chose when daemon.controlPort is 0).
  public var controlPort: String { control.boundPort }
  public internal(set) var phase = Phase.registering
  /// The job's id on every message; a recovery retires it and takes a new one.
  public internal(set) var job: UInt32
  var retiredJobs: Set<UInt32> = []

  var registry: Registry
  var plan: FeedPlan
  let maxInFlight: Int
  var inFlight = 0
  var sequence: UInt64 = 0
  var pendingFeed: [[UInt8]]?
  var ledgers: [Int: EpochLedger] = [:]
  var reports: [EpochReport] = []
  var liveStats: [LiveStats?]
  var rejected: [String: Int] = [:]
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
    // Check every stage's shapes here, before any process is asked to build one.
    _ = try config.blueprints(sampleShape: train.sampleShape, classes: train.classes)
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
    let trainOrder = BatchOrder(count: train.count, batchSize: config.training.batchSize, shuffle: true, seed: config.seed)
    let evalOrder = BatchOrder(count: test.count, batchSize: config.training.evalBatchSize, shuffle: false, seed: 0)
    // `sequential`: one phase of training.epochs per stage, each training only that stage.
    let phases = config.schedule == .sequential ? config.stages.count : 1
    return FeedPlan(
      trainOrder: trainOrder, evalOrder: evalOrder, epochs: config.training.epochs * phases,
      microBatches: config.method == .e2e ? config.daemon.microBatches : 1,
      epochsPerPhase: config.training.epochs, startEpoch: resume?.epochsDone ?? 0, startBatch: resume?.batchesDone ?? 0,
      checkpointEvery: config.daemon.checkpointEverySteps)
  }

  static func newJobID() -> UInt32 {
    var rng = SeededGenerator(seed: UInt64(bitPattern: WallClock.micros()) ^ UInt64(getpid()))
    return UInt32(truncatingIfNeeded: rng.next()) | 1
  }

  /// Binds the control and sink endpoints on the configured interface.
  public func bind() throws {
    let host = config.daemon.bind
    if let keys = curveKeys {
      zap = try ZAPHandler(context: context, allowed: allowedWorkerKeys) { [log] key, address in
        log("refused a peer at \(address): key \(key) is not on security.allowedWorkerKeys")
      }
      try control.secure(.server(keys))
      try sink.secure(.server(keys))
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
  /// Whether the images travel with every batch (ContSup with the E context).
  var usesImages: Bool { config.method == .contsup && config.contsup.mode != .R1 }
  var usesSkip: Bool { config.method == .contsup && config.contsup.mode != .E }
  var stageCount: Int { config.stages.count }

  // MARK: - Run

  /// Runs the job to the end. `tick` is called every loop turn (the launcher watches its
  /// children there) and may throw to abort.
  /// Seconds since stage `stage` was last heard from.
  public func silentSeconds(stage: Int) -> Double {
    registry.members[stage].map { Double(WallClock.micros() - $0.lastHeardMicros) / 1e6 } ?? 0
  }

  /// Training batches fed in epochs at or after `epoch`, and batches in flight now.
  public func batchesFed(since epoch: Int) -> (fed: Int, inFlight: Int) {
    (trainBatchesFed.filter { $0.key >= epoch }.values.reduce(0, +), inFlight)
  }

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
    try writeManifest(state: interrupted ? "interrupted" : "finished", detail: nil)
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
    let first = registry.members[0]!.hello.dataEndpoint
    let feed = try Socket(context, .push)
    if let keys = curveKeys { try feed.secure(.client(keys, serverKey: registry.members[0]!.hello.publicKey ?? "")) }
    try feed.setHighWaterMarks(send: Int32(config.daemon.highWaterMark), receive: Int32(config.daemon.highWaterMark))
    try feed.setTimeouts(receiveMilliseconds: 0, sendMilliseconds: 0)
    try feed.connect(first)
    self.feed = feed
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

  // MARK: - Control

  func serviceControl() throws {
    while try !Socket.pollReadable([control], timeoutMilliseconds: 0).isEmpty {
      var frames = try control.receive()
      guard frames.count >= 2 else {
        reject("no-identity", "control message without a routing identity")
        continue
      }
      let identity = frames.removeFirst()
      let message: Message
      switch Result(catching: { () throws(WireError) -> Message in try Message(frames: frames) }) {
      case .success(let decoded): message = decoded
      case .failure(let error):
        reject(error.reason, "control: \(error)")
        if case .versionMismatch = error {  // tell the peer why, in its own words
          try? control.send([identity] + Message(kind: .error, body: ErrorBody(message: "refused: \(error)")).encode())
        }
        continue
      }
      try handleControl(message, from: identity)
    }
  }

  func handleControl(_ message: Message, from identity: [UInt8]) throws {
    let now = WallClock.micros()
    if message.kind == .hello {
      try handleHello(message, from: identity, now: now)
      return
    }
    guard let stage = registry.stage(of: identity) else {
      reject("unregistered", "\(message.kind) from a peer that never said HELLO")
      return
    }
    registry.heard(from: stage, atMicros: now)  // any word, even about a retired job, says it lives
    guard message.job == job || message.kind == .heartbeat else {
      if retiredJobs.contains(message.job) { return reject("stale-job", "\(message.kind) from stage \(stage) for a retired job") }
      reject("wrong-job", "\(message.kind) for job \(message.job) from stage \(stage)")
      return
    }
    switch message.kind {
    case .ready:
      registry.markReady(stage)
      log("stage \(stage) ready (\(registry.members[stage]!.hello.host) pid \(registry.members[stage]!.hello.pid))")
    case .heartbeat:
      if let beat = try? message.body(Heartbeat.self) {
        let reply = Heartbeat(sentMicros: now, echoMicros: beat.sentMicros, schedulerMicros: WallClock.micros())
        try sendControl(to: stage, Message(kind: .heartbeat, body: reply))
      }
    case .stats:
      guard let body = try? message.body(StatsBody.self) else { return reject("bad-body", "STATS body from stage \(stage)") }
      if let live = body.live { liveStats[stage] = live }
      if let totals = body.totals, totals.stage == stage {
        ledgers[totals.epoch]?.add(totals)
        try closeEpochs()
      }
    case .trace:
      if let chunk = try? message.body(TraceChunk.self) { traceSpool.append(chunk.events) }
    case .bye:
      let bye = try message.body(Bye.self)
      byes[stage] = bye
      if phase == .running || phase == .registering {
        throw WorkerFailure(stage: stage, reason: "its worker left during the run (\(bye.reason))", silentSeconds: 0)
      }
    case .error:
      let text = (try? message.body(ErrorBody.self).message) ?? "unreadable"
      throw RuntimeError("stage \(stage) failed: \(text)")
    default:
      reject("unexpected-\(message.kind)", "\(message.kind) from stage \(stage)")
    }
  }

  func handleHello(_ message: Message, from identity: [UInt8], now: Int64) throws {
    guard let hello = try? message.body(Hello.self) else { return reject("bad-body", "HELLO without a readable body") }
    guard phase == .registering else {
      reject("late-hello", "HELLO from \(hello.host) pid \(hello.pid) while the job runs")
      try control.send([identity] + Message(kind: .error, body: ErrorBody(message: "job \(job) is already running with every stage taken")).encode())
      return
    }
    if curveKeys != nil && hello.publicKey == nil {
      reject("refused-hello", "refused \(hello.host) pid \(hello.pid): no public key in its HELLO")
      try control.send([identity] + Message(kind: .error, body: ErrorBody(message: "this job uses CURVE: the worker's HELLO carries no public key")).encode())
      return
    }
    switch registry.register(identity: identity, hello: hello, nowMicros: now) {
    case .failure(let error):
      reject("refused-hello", "refused \(hello.host) pid \(hello.pid): \(error)")
      try control.send([identity] + Message(kind: .error, body: ErrorBody(message: error.message)).encode())
    case .success(let stage):
      log("stage \(stage) registered: \(hello.host) pid \(hello.pid), data at \(hello.dataEndpoint)")
      if registry.readyToAssign { try assignAll() }
    }
  }

  /// Every stage has a worker: tell each one its stage and whom to send to.
  func assignAll() throws {
    if recoveryNoticed != nil { try rollBack() }
    registry.markAllAssigned()
    originMicros = WallClock.micros()
    schedulerTrace.originMicros = originMicros
    let plans = try config.blueprints(sampleShape: train.sampleShape, classes: train.classes)
    for stage in 0..<stageCount {
      let downstream = stage + 1 < stageCount ? registry.members[stage + 1]!.hello.dataEndpoint : sinkEndpoint
      var assignment = Assignment(
        job: job, stage: stage, stageCount: stageCount, config: config.yaml(), sampleShape: train.sampleShape,
        classes: train.classes, batchesPerEpoch: plan.trainOrder.batchesPerEpoch, downstream: downstream,
        runDirectory: directory.path, originMicros: originMicros, pixelMean: train.mean, pixelStd: train.std,
        receivesBelief: config.method == .sid && stage > 0, receivesImages: usesImages,
        previousInputShape: usesSkip && stage > 0 ? plans[stage - 1].body.inputShape : nil,
        sendsSkip: usesSkip && stage < stageCount - 1,
        upstreamGradient: config.method == .e2e && stage > 0 ? registry.members[stage - 1]!.hello.gradEndpoint : nil,
        restoreFrom: resume.flatMap { $0.checkpoints.indices.contains(stage) ? $0.checkpoints[stage] : nil })
      if curveKeys != nil {
        let key = { (stage: Int) in self.registry.members[stage]!.hello.publicKey! }
        let sendsGradients = config.method == .e2e && stage + 1 < stageCount
        assignment.downstreamKey = stage + 1 < stageCount ? key(stage + 1) : curveKeys?.publicKey
        assignment.upstreamGradientKey = assignment.upstreamGradient != nil ? key(stage - 1) : nil
        assignment.peerKeys = [stage == 0 ? curveKeys!.publicKey : key(stage - 1)] + (sendsGradients ? [key(stage + 1)] : [])
      }
      try sendControl(to: stage, Message(kind: .assign, body: assignment))
    }
  }

  func sendControl(to stage: Int, _ message: Message) throws {
    guard let member = registry.members[stage] else { return }
    var message = message
    message.job = job
    try control.send([member.identity] + message.encode())
  }

  /// Heartbeats out, to every worker registered (waiting ones answer); stages silent too
  /// long are dead.
  func keepAlive() throws {
    let now = WallClock.micros()
    if now - lastHeartbeatMicros >= heartbeatMicros {
      lastHeartbeatMicros = now
      for stage in 0..<stageCount {
        try sendControl(to: stage, Message(kind: .heartbeat, body: Heartbeat(sentMicros: now, echoMicros: nil, schedulerMicros: now)))
      }
    }
    let dead = registry.silent(nowMicros: now, limitMicros: Int64(config.daemon.liveness) * heartbeatMicros)
    if let stage = dead.first, let member = registry.members[stage] {
      throw WorkerFailure(
        stage: stage, reason: "\(member.hello.host) pid \(member.hello.pid) missed \(config.daemon.liveness) heartbeats",
        silentSeconds: Double(now - member.lastHeardMicros) / 1e6)
    }
  }

  func reject(_ reason: String, _ detail: String) {
    rejected[reason, default: 0] += 1
    if rejected[reason]! <= 5 { log("rejected: \(detail)") }
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
