import Foundation
import Learning
import Linalg
import Memory
import NN
import Telemetry
import Wire
import ZMQ

/// A stage worker: registers with the scheduler, builds the stage it is assigned, then loops:
/// receive, forward, send the detached output downstream at once, local loss, backward inside
/// the stage, optimizer step. No gradient crosses the stage boundary.
public final class Worker {
  public struct Options: Sendable {
    public var scheduler: String
    public var requestedStage: Int?
    /// The interface the data socket binds; `advertise` is the host others reach it by.
    public var bindHost = "127.0.0.1"
    public var advertiseHost: String?
    /// How long to wait for the scheduler to assign a stage.
    public var registrationTimeout: Duration = .seconds(120)
    public var protocolVersion = Int(Protocol.version)
    /// CURVE: this worker's keys and the scheduler's public key (both, or neither).
    public var curve: CurveKeyPair?
    public var schedulerKey: String?
    /// Bind a non-loopback address without CURVE (`--insecure`).
    public var insecure = false
    public init(scheduler: String, requestedStage: Int? = nil) {
      self.scheduler = scheduler
      self.requestedStage = requestedStage
    }
  }

  let options: Options
  let log: @Sendable (String) -> Void
  let context: Context
  let control: Socket
  let dataIn: Socket
  /// e2e only: gradients from the next stage arrive here; ours go to the previous stage.
  let gradIn: Socket
  var gradOut: Socket?
  var backprop = BackpropState()
  /// e2e: compute time of the current batch so far (for the straggler experiment).
  var batchComputeMicros: Int64 = 0
  var dataEndpoint = ""
  var gradEndpoint = ""

  // Assigned state.
  var assignment: Assignment!
  var config = RunConfig()
  var stage: Stage!
  var downstream: Socket!
  var isLast = false
  var trainStep = 0
  var expectedSequence: UInt64 = 0
  var rejected: [String: Int] = [:]
  var totals: PhaseTotals!
  var trace: TraceRecorder
  var clock = ClockSync()

  // Liveness and live statistics.
  var heartbeatInterval: Int64 = 1_000_000
  var liveness: Int64 = 5
  var lastHeardMicros: Int64 = 0
  var lastSentMicros: Int64 = 0
  var window = StatsWindow()
  var statsInterval: Int64 = 500_000
  var lastSequence: UInt64 = 0
  var stopReason: String?
  /// Set by RESET (another stage failed): leave the loop, drop the stage, say HELLO again.
  var resetReason: String?
  var dataInConfigured = false
  /// Mid-epoch checkpoints this process wrote, oldest first.
  var stepCheckpoints: [String] = []
  /// CURVE: checks who connects to our data and gradient sockets (our neighbours only).
  var zap: ZAPHandler?
  /// Jobs this worker was reset out of: their messages still in flight are stale.
  var retiredJobs: Set<UInt32> = []
  /// The replay schedule's buffer (stages after the first), fresh inputs counted as producer steps.
  var replay: ReplayBuffer<Stage.Input>?
  var arrivals = 0
  var replayStalled = false
  /// Replay draws belong between the current epoch's training batches: open from a training
  /// batch to the epoch's train-end marker, closed during evaluation and checkpoints.
  var replayOpen = false
  /// Data-plane bytes this stage sent (activations and gradients).
  var bytesSent = 0

  public init(_ options: Options, log: @escaping @Sendable (String) -> Void) throws {
    self.options = options
    self.log = log
    context = try Context()
    control = try Socket(context, .dealer)
    try control.setMaximumMessageSize(Protocol.maxControlFrameBytes)
    dataIn = try Socket(context, .pull)
    gradIn = try Socket(context, .pull)
    trace = TraceRecorder(pid: 0)
  }

  deinit { zap?.stop() }

  // MARK: - The loop

  func loop() throws {
    while stopReason == nil && resetReason == nil {
      if let signal = Signals.stopRequested {
        stopReason = "signal \(signal)"
        break
      }
      let now = WallClock.micros()
      try keepAlive(now)
      if now - window.startMicros >= statsInterval { try sendLiveStats(now) }

      let waitStart = WallClock.micros()
      // With a replay buffer, a stage that can replay does not wait for fresh input.
      let canReplay = replay != nil && replayOpen && !replayStalled
      // e2e: between a batch's last forward and its update, only gradients are read.
      let sockets = backprop.awaitingGradients ? [control, gradIn] : (isBackprop ? [control, dataIn, gradIn] : [control, dataIn])
      let polled = try Socket.pollReadable(sockets, timeoutMilliseconds: canReplay ? 0 : 50)
      let ready = Set(polled.map { sockets[$0] === gradIn ? 2 : sockets[$0] === dataIn ? 1 : 0 })
      if ready.contains(2) {
        trace.record(backprop.awaitingGradients ? "gradient-wait" : "receive-wait", startMicros: waitStart, endMicros: WallClock.micros())
        try handleGradient()
      } else if ready.contains(1) {
        trace.record("receive-wait", startMicros: waitStart, endMicros: WallClock.micros())
        replayStalled = false
        try handleData()
      } else if canReplay {
        replayOnce()
      }
      if ready.contains(0) { try serviceControl() }
    }
  }

  /// Our heartbeat when one is due; a scheduler silent past the liveness limit is lost.
  func keepAlive(_ now: Int64) throws {
    if now - lastHeardMicros > liveness * heartbeatInterval {
      throw RuntimeError("lost the scheduler: nothing heard for \((now - lastHeardMicros) / 1000) ms (liveness \(liveness) × \(heartbeatInterval / 1000) ms)")
    }
    if now - lastSentMicros >= heartbeatInterval {
      try send(Message(kind: .heartbeat, body: Heartbeat(sentMicros: now)))
    }
  }

  /// Handles every control message waiting (heartbeats, STOP, ERROR).
  func serviceControl() throws {
    while try !Socket.pollReadable([control], timeoutMilliseconds: 0).isEmpty {
      guard let message = accepted(try control.receive(), plane: "control") else { continue }
      lastHeardMicros = WallClock.micros()
      switch message.kind {
      case .heartbeat: try answerHeartbeat(message)
      case .stop: stopReason = (try? message.body(StopBody.self).reason) ?? "stop"
      case .reset: resetReason = (try? message.body(StopBody.self).reason) ?? "reset"
      case .error: throw RuntimeError("the scheduler ended the job: \((try? message.body(ErrorBody.self).message) ?? "")")
      default: count("unexpected-\(message.kind)")
      }
    }
  }

  func answerHeartbeat(_ message: Message) throws {
    guard let beat = try? message.body(Heartbeat.self), let echo = beat.echoMicros, let theirs = beat.schedulerMicros else { return }
    clock.observe(sentMicros: echo, schedulerMicros: theirs, receivedMicros: WallClock.micros())
    trace.offsetMicros = clock.offsetMicros
  }

  /// The decoded message, or nil after counting and logging why it was rejected.
  func accepted(_ frames: [[UInt8]], plane: String, check: ((Message) throws(WireError) -> Void)? = nil) -> Message? {
    let result = Result { () throws(WireError) -> Message in
      let message = try Message(frames: frames)
      try check?(message)
      return message
    }
    switch result {
    case .success(let message): return message
    case .failure(let error):
      count(error.reason)
      if rejected[error.reason, default: 0] <= 5 { log("rejected a \(plane) message (\(error.reason)): \(error)") }
      return nil
    }
  }

  func handleData() throws {
    guard let message = accepted(try dataIn.receive(), plane: "data", check: check) else { return }
    expectedSequence = message.sequence + 1
    lastSequence = message.sequence
    switch message.kind {
    case .train where isBackprop: try trainBackprop(message)
    case .train: try train(message)
    case .eval: try evaluate(message)
    case .marker: try mark(message)
    default: break
    }
  }

  /// Checks what `Message(frames:)` cannot: the job, the kind, the shapes, the order. The
  /// sequence must be exactly the next one: a stale or forged far-ahead message cannot
  /// shift this stage's notion of where the stream is.
  func check(_ message: Message) throws(WireError) {
    guard message.job == assignment.job else {
      if retiredJobs.contains(message.job) { throw .staleJob(message.job) }
      throw .unexpected("message for job \(message.job), this is job \(assignment.job)")
    }
    guard [.train, .eval, .marker].contains(message.kind) else { throw .unexpected("\(message.kind) on a data socket") }
    if message.kind == .marker {
      guard MarkerFlag(rawValue: message.flags) != nil else { throw .unexpected("unknown marker flag \(message.flags)") }
    } else {
      let x = try message.expect(.activations, .f32, sampleShape: stage.inputShape)
      let batch = x.shape[0]
      let labels = try message.expect(.labels, .i32, sampleShape: [], batch: batch)
      guard labels.int32s.allSatisfy({ (0..<Int32(assignment.classes)).contains($0) }) else {
        throw .unexpected("labels outside 0…\(assignment.classes - 1)")
      }
      if assignment.receivesBelief { _ = try message.expect(.belief, .f32, sampleShape: [assignment.classes], batch: batch) }
      if assignment.receivesImages { _ = try message.expect(.context, .u8, sampleShape: assignment.sampleShape, batch: batch) }
      if let shape = assignment.previousInputShape { _ = try message.expect(.skip, .f32, sampleShape: shape, batch: batch) }
      if isBackprop && message.kind == .train { try checkMicroBatch(message, batch: batch) }
    }
    guard message.sequence == expectedSequence else {
      throw .outOfOrder(expected: expectedSequence, got: message.sequence)
    }
  }

  /// e2e and GPipe: the micro-batch's place in its batch and its share of the batch loss
  /// (0 micro-batches is the M = 1 of plain e2e).
  func checkMicroBatch(_ message: Message, batch: Int) throws(WireError) {
    let count = max(1, Int(message.microCount))
    guard Int(message.microIndex) < count, count <= Protocol.maxMicroBatches else {
      throw .unexpected("micro-batch \(message.microIndex) of \(message.microCount)")
    }
    if backprop.inBatch, count != backprop.microCount {
      throw .unexpected("micro-batch count \(count) inside a batch of \(backprop.microCount)")
    }
    if message.tensor(.stats) != nil {
      let share = try message.expect(.stats, .f32, sampleShape: [], batch: 1).floats[0]
      guard share.isFinite, share > 0, share <= 1 else { throw .unexpected("micro-batch share \(share) outside (0, 1]") }
    }
  }

  // MARK: - Reporting and leaving

  func sendLiveStats(_ now: Int64) throws {
    let live = window.report(stage: assignment.stage, step: trainStep, lastSequence: lastSequence, rejected: rejected, nowMicros: now)
    try send(Message(kind: .stats, body: StatsBody(live: live, totals: nil)))
    window = StatsWindow(startMicros: now)
  }

  func send(_ message: Message) throws {
    var message = message
    message.job = assignment?.job ?? 0
    try control.send(message.encode())
    lastSentMicros = WallClock.micros()
  }

  func count(_ reason: String) { rejected[reason, default: 0] += 1 }

  /// Sends the trace recorded so far to the scheduler, in chunks, and forgets it.
  func shipTrace() throws {
    while !trace.events.isEmpty {
      try send(Message(kind: .trace, body: TraceChunk(stage: assignment.stage, events: trace.drain(upTo: 5000))))
    }
  }

  /// Saves the stage (final weights after a finished run, else the last weights beside the
  /// epoch checkpoints), ships the trace, says BYE, and gives the sockets time to flush.
  func finish() throws {
    let finished = stopReason == "finished"
    let path = finished ? finalCheckpointPath : interruptedCheckpointPath
    var saved: String?
    do {
      try saveCheckpoint(to: path, epochsDone: finished ? config.training.epochs * (config.schedule == .sequential ? assignment.stageCount : 1) : nil)
      saved = path
    } catch {
      log("could not save \(path): \(error)")
    }
    try shipTrace()
    let bye = Bye(
      stage: assignment.stage, checkpoint: saved, rejected: rejected, traceDropped: trace.dropped,
      reason: stopReason ?? "stop", replay: replay?.statistics, peakResidentBytes: ProcessMemory.peakResidentBytes,
      bytesSent: bytesSent)
    if let stats = replay?.statistics {
      log(String(format: "replay: %d draws, %d stalls, mean age %.1f producer steps (max %d), %.2f uses per entry", stats.draws, stats.stalls, stats.meanAge, stats.maxAge, stats.meanUses))
    }
    try send(Message(kind: .bye, body: bye))
    try control.setLinger(milliseconds: 5000)  // let BYE and the trace leave
    if !rejected.isEmpty { log("rejected messages: \(rejected.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))") }
    log("stage \(assignment.stage) done after \(trainStep) steps; weights in \(saved ?? "(not saved)")")
  }
}
