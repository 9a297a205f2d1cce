import Foundation
import Learning
import Linalg
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
  /// The replay schedule's buffer (stages after the first), fresh inputs counted as producer steps.
  var replay: ReplayBuffer<Stage.Input>?
  var arrivals = 0
  var replayStalled = false
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

  // MARK: - Registration

  /// Runs the worker to the end; returns normally after a STOP, throws on a fatal problem.
  public func run() throws {
    try dataIn.setMaximumMessageSize(Protocol.maxFrameBytes)
    try dataIn.bind("tcp://\(options.bindHost):*")
    let bound = dataIn.lastEndpoint
    let port = bound.split(separator: ":").last.map(String.init) ?? ""
    dataEndpoint = "tcp://\(options.advertiseHost ?? options.bindHost):\(port)"
    try gradIn.setMaximumMessageSize(Protocol.maxFrameBytes)
    try gradIn.bind("tcp://\(options.bindHost):*")
    let gradPort = gradIn.lastEndpoint.split(separator: ":").last.map(String.init) ?? ""
    gradEndpoint = "tcp://\(options.advertiseHost ?? options.bindHost):\(gradPort)"
    try control.connect(options.scheduler)
    let hello = Hello(
      protocolVersion: options.protocolVersion, host: ProcessInfo.processInfo.hostName,
      pid: getpid(), dataEndpoint: dataEndpoint, gradEndpoint: gradEndpoint, requestedStage: options.requestedStage)
    try send(Message(kind: .hello, body: hello))
    log("registering with \(options.scheduler) (data endpoint \(dataEndpoint))")

    let assign = try awaitControl(.assign, timeout: options.registrationTimeout, waitingFor: "a stage assignment")
    try setUp(try assign.body(Assignment.self))
    try send(Message(kind: .ready, body: Ready(stage: assignment.stage, parameterCount: stage.store.count)))
    _ = try awaitControl(.start, timeout: .seconds(600), waitingFor: "START")
    lastHeardMicros = WallClock.micros()
    try loop()
    try finish()
  }

  /// Waits for one control message of `kind`, answering heartbeats meanwhile; ERROR and
  /// silence past the timeout are fatal.
  func awaitControl(_ kind: Kind, timeout: Duration, waitingFor what: String) throws -> Message {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
      if Signals.stopRequested != nil { throw RuntimeError("interrupted while waiting for \(what)") }
      guard try !Socket.pollReadable([control], timeoutMilliseconds: 100).isEmpty else { continue }
      guard let message = accepted(try control.receive(), plane: "control") else { continue }
      lastHeardMicros = WallClock.micros()
      switch message.kind {
      case kind: return message
      case .error: throw RuntimeError("the scheduler refused this worker: \(try message.body(ErrorBody.self).message)")
      case .heartbeat: try answerHeartbeat(message)
      case .stop: throw RuntimeError("the scheduler stopped the job before it started: \((try? message.body(StopBody.self).reason) ?? "")")
      default: count("unexpected-\(message.kind)")
      }
    }
    throw RuntimeError("no \(what) from \(options.scheduler) within \(timeout): is the scheduler running and reachable?")
  }

  func setUp(_ assignment: Assignment) throws {
    self.assignment = assignment
    config = try RunConfig.parse(yaml: assignment.config)
    BLAS.setThreads(config.training.threads)
    stage = try config.buildStage(assignment.stage, sampleShape: assignment.sampleShape, classes: assignment.classes)
    isLast = assignment.stage == assignment.stageCount - 1
    downstream = try Socket(context, .push)
    try downstream.setHighWaterMarks(send: Int32(config.daemon.highWaterMark), receive: Int32(config.daemon.highWaterMark))
    try downstream.setTimeouts(receiveMilliseconds: 200, sendMilliseconds: 200)
    try dataIn.setHighWaterMarks(send: Int32(config.daemon.highWaterMark), receive: Int32(config.daemon.highWaterMark))
    try downstream.connect(assignment.downstream)
    if let upstream = assignment.upstreamGradient {
      let socket = try Socket(context, .push)
      try socket.setHighWaterMarks(send: Int32(config.daemon.highWaterMark), receive: Int32(config.daemon.highWaterMark))
      try socket.setTimeouts(receiveMilliseconds: 200, sendMilliseconds: 200)
      try socket.connect(upstream)
      gradOut = socket
    }
    heartbeatInterval = Int64(config.daemon.heartbeatMilliseconds) * 1000
    liveness = Int64(config.daemon.liveness)
    statsInterval = Int64(config.daemon.statsMilliseconds) * 1000
    trace = TraceRecorder(pid: assignment.stage + 1)
    trace.originMicros = assignment.originMicros
    totals = PhaseTotals(stage: assignment.stage, epoch: 0, phase: .train)
    if config.schedule == .replay && assignment.stage > 0 {
      replay = ReplayBuffer(capacity: config.replay.buffer, maxReuse: config.replay.maxReuse > 0 ? config.replay.maxReuse : nil)
    }
    log("stage \(assignment.stage) of 0…\(assignment.stageCount - 1): \(stage.body.layers.map(\.summary).joined(separator: ", ")); \(stage.store.count) parameters; output → \(assignment.downstream)")
  }

  // MARK: - The loop

  func loop() throws {
    while stopReason == nil {
      if let signal = Signals.stopRequested {
        stopReason = "signal \(signal)"
        break
      }
      let now = WallClock.micros()
      if now - lastHeardMicros > liveness * heartbeatInterval {
        throw RuntimeError("lost the scheduler: nothing heard for \((now - lastHeardMicros) / 1000) ms (liveness \(liveness) × \(heartbeatInterval / 1000) ms)")
      }
      if now - lastSentMicros >= heartbeatInterval {
        try send(Message(kind: .heartbeat, body: Heartbeat(sentMicros: now)))
      }
      if now - window.startMicros >= statsInterval { try sendLiveStats(now) }

      let waitStart = WallClock.micros()
      // With a replay buffer, a stage that can replay does not wait for fresh input.
      let canReplay = replay != nil && !replayStalled
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

  /// Handles every control message waiting (heartbeats, STOP, ERROR).
  func serviceControl() throws {
    while try !Socket.pollReadable([control], timeoutMilliseconds: 0).isEmpty {
      guard let message = accepted(try control.receive(), plane: "control") else { continue }
      lastHeardMicros = WallClock.micros()
      switch message.kind {
      case .heartbeat: try answerHeartbeat(message)
      case .stop: stopReason = "stop"
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
      log("rejected a \(plane) message (\(error.reason)): \(error)")
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
    guard message.job == assignment.job else { throw .unexpected("message for job \(message.job), this is job \(assignment.job)") }
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
    }
    guard message.sequence == expectedSequence else {
      throw .outOfOrder(expected: expectedSequence, got: message.sequence)
    }
  }

  /// The stage's input from a message's tensors (checked by `check`).
  func stageInput(_ message: Message) -> Stage.Input {
    func tensor(_ role: Role) -> Tensor? {
      message.tensor(role).map { Tensor(shape: $0.shape, storage: $0.floats) }
    }
    // Images travel as their raw bytes (ContSup E) and are normalised here.
    let image = message.tensor(.context).map { raw in
      Tensor(shape: raw.shape, storage: raw.bytes.map { (Float($0) / 255 - assignment.pixelMean) / assignment.pixelStd })
    }
    return Stage.Input(
      x: tensor(.activations)!, labels: message.tensor(.labels)!.int32s, belief: tensor(.belief), image: image,
      previousInput: tensor(.skip))
  }

  func train(_ message: Message) throws {
    let input = stageInput(message)
    // `sequential`: the flags name the one stage that trains; the others only pass data on.
    if message.flags > 0 && Int(message.flags) - 1 != assignment.stage {
      let pass = stage.forward(input)
      if isLast { try sendResult(message, loss: 0, correct: 0, samples: 0) } else { try forward(message, pass) }
      return
    }
    let lr = config.learningRateSchedule.rate(
      base: config.optimizer.learningRate, step: trainStep, stepsPerEpoch: assignment.batchesPerEpoch,
      totalEpochs: config.training.epochs)
    let t0 = WallClock.micros()
    let pass = stage.forward(input)
    let t1 = WallClock.micros()
    trace.record("forward", startMicros: t0, endMicros: t1)
    // Pipelined: downstream starts now, before our backward. Lockstep is the locked
    // control: one stage computes at a time, so the batch moves on after our update.
    let handOnEarly = config.schedule != .lockstep
    if !isLast && handOnEarly { try forward(message, pass) }
    let t2 = WallClock.micros()
    let result = stage.localGradients(pass, labels: input.labels)
    let t3 = WallClock.micros()
    stage.optimizer.update(stage.store, learningRate: lr)
    let t4 = WallClock.micros()
    trace.record("backward", startMicros: t2, endMicros: t3)
    trace.record("update", startMicros: t3, endMicros: t4)
    straggle(computedMicros: (t1 - t0) + (t4 - t2))
    if !isLast && !handOnEarly { try forward(message, pass) }
    if isLast { try sendResult(message, loss: result.loss, correct: result.correct, samples: input.labels.count) }
    replay?.write(input, producerStep: arrivals, uses: 1)  // trained on once already
    arrivals += 1
    trainStep += 1
    totals.add(loss: result.loss, correct: result.correct, samples: input.labels.count)
    window.add(busyMicros: (t1 - t0) + (t4 - t2), loss: result.loss, samples: input.labels.count)
  }

  /// The straggler experiment: a slowed stage waits out (slowdown − 1) × its compute time,
  /// traced as `straggle` so it counts as neither work nor waiting for input.
  func straggle(computedMicros: Int64) {
    guard config.daemon.slowdown > 1, config.daemon.slowStage == assignment.stage else { return }
    let extra = Double(computedMicros) * (config.daemon.slowdown - 1)
    let start = WallClock.micros()
    usleep(UInt32(max(0, extra)))
    trace.record("straggle", startMicros: start, endMicros: WallClock.micros())
  }

  /// One replay step: a buffer draw trains the stage again (nothing is sent on); when no
  /// entry can be drawn the stage stalls until fresh input arrives.
  func replayOnce() {
    guard let entry = replay?.draw(producerStep: arrivals) else {
      replayStalled = true
      return
    }
    let lr = config.learningRateSchedule.rate(
      base: config.optimizer.learningRate, step: trainStep, stepsPerEpoch: assignment.batchesPerEpoch,
      totalEpochs: config.training.epochs)
    let t0 = WallClock.micros()
    let result = stage.trainLocal(entry.payload, learningRate: lr).1
    let t1 = WallClock.micros()
    trace.record("replay", startMicros: t0, endMicros: t1)
    window.add(busyMicros: t1 - t0, loss: result.loss, samples: 0)
  }

  func evaluate(_ message: Message) throws {
    let input = stageInput(message)
    let t0 = WallClock.micros()
    let (pass, logits) = stage.infer(input)
    let t1 = WallClock.micros()
    if !isLast { try forward(message, pass) }
    let t2 = WallClock.micros()
    // A stage without a head (a kernel hidden stage) has nothing to score, nor has an inner
    // stage of e2e, whose head is never trained.
    let scored = isBackprop && !isLast ? nil : logits
    let result = scored.map { softmaxCrossEntropy(logits: $0, labels: input.labels) }
    let t3 = WallClock.micros()
    trace.record("eval", startMicros: t0, endMicros: t1)
    trace.record("eval", startMicros: t2, endMicros: t3)
    if isLast { try sendResult(message, loss: result?.loss ?? 0, correct: result?.correct ?? 0, samples: input.labels.count) }
    if let result { totals.add(loss: result.loss, correct: result.correct, samples: input.labels.count) }
    window.add(busyMicros: (t1 - t0) + (t3 - t2), loss: nil, samples: 0)
  }

  /// A marker closes a phase: report its totals, then pass the marker on.
  func mark(_ message: Message) throws {
    let flag = MarkerFlag(rawValue: message.flags)!
    if flag == .trainEnd || flag == .evalEnd {
      totals.epoch = Int(message.epoch)
      totals.phase = flag == .trainEnd ? .train : .eval
      try send(Message(kind: .stats, body: StatsBody(live: nil, totals: totals)))
      totals = PhaseTotals(stage: assignment.stage, epoch: Int(message.epoch), phase: flag == .trainEnd ? .eval : .train)
    }
    try sendDownstream(message)
  }

  /// Sends our output on with the same header (a detached copy: no gradient comes back),
  /// with what the next stage's method needs: the labels, our belief (SID), the images
  /// (ContSup E, passed along) and our augmented input (ContSup R1).
  func forward(_ input: Message, _ pass: Stage.Pass) throws {
    var message = input
    message.stage = UInt16(assignment.stage + 1)
    var tensors = [WireTensor(role: .activations, shape: pass.activations.shape, floats: pass.activations.storage), input.tensor(.labels)!]
    if let belief = pass.belief { tensors.append(WireTensor(role: .belief, shape: belief.shape, floats: belief.storage)) }
    if let image = input.tensor(.context) { tensors.append(image) }
    if assignment.sendsSkip {
      tensors.append(WireTensor(role: .skip, shape: pass.augmentedInput.shape, floats: pass.augmentedInput.storage))
    }
    message.tensors = tensors
    try sendDownstream(message)
  }

  func sendResult(_ input: Message, loss: Float, correct: Int, samples: Int) throws {
    var message = Message(kind: .result, tensors: [WireTensor(role: .stats, shape: [3], floats: [loss, Float(correct), Float(samples)])])
    (message.job, message.stage, message.epoch, message.step, message.sequence) =
      (input.job, UInt16(assignment.stage), input.epoch, input.step, input.sequence)
    message.flags = input.kind == .eval ? 1 : 0
    try sendDownstream(message)
  }

  func sendDownstream(_ message: Message) throws { try send(message, on: downstream) }

  /// Sends on a data-plane socket (activations down, gradients up); while the peer's queue is
  /// full, keeps answering control messages so heartbeats and STOP still get through.
  func send(_ message: Message, on socket: Socket) throws {
    let frames = message.encode()
    bytesSent += frames.reduce(0) { $0 + $1.count }
    let start = WallClock.micros()
    while true {
      let outcome = Result { () throws(ZMQError) in try socket.send(frames) }
      if case .failure(let error) = outcome {
        guard error.isTimeout else { throw error }
        try serviceControl()
        if stopReason != nil { return }
        if WallClock.micros() - lastHeardMicros > liveness * heartbeatInterval {
          throw RuntimeError("lost the scheduler while blocked sending to the next stage")
        }
        continue
      }
      break
    }
    let end = WallClock.micros()
    if end - start > 50 { trace.record("send-blocked", startMicros: start, endMicros: end) }
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

  /// Saves the stage, ships the trace, says BYE, and gives the sockets time to flush.
  func finish() throws {
    let path = "\(assignment.runDirectory)/stage-\(assignment.stage).safetensors"
    var saved: String?
    do {
      try stage.save(to: path, metadata: ["step": "\(trainStep)", "job": "\(assignment.job)", "config_hash": config.configHash])
      saved = path
    } catch {
      log("could not save \(path): \(error)")
    }
    while !trace.events.isEmpty {
      try send(Message(kind: .trace, body: TraceChunk(stage: assignment.stage, events: trace.drain(upTo: 5000))))
    }
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

/// Busy time, loss and samples since the last live report.
struct StatsWindow {
  var startMicros = WallClock.micros()
  var busyMicros: Int64 = 0
  var lossSum = 0.0
  var lossCount = 0
  var samples = 0

  mutating func add(busyMicros busy: Int64, loss: Float?, samples n: Int) {
    busyMicros += busy
    if let loss {
      lossSum += Double(loss)
      lossCount += 1
    }
    samples += n
  }

  func report(stage: Int, step: Int, lastSequence: UInt64, rejected: [String: Int], nowMicros: Int64) -> LiveStats {
    let elapsed = Double(max(nowMicros - startMicros, 1))
    return LiveStats(
      stage: stage, step: step, loss: lossCount > 0 ? lossSum / Double(lossCount) : .nan,
      samplesPerSecond: Double(samples) / elapsed * 1e6, busy: Double(busyMicros) / elapsed,
      lastSequence: lastSequence, rejected: rejected)
  }
}
