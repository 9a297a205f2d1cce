import Foundation
import Learning
import Linalg
import NN
import Telemetry
import Wire
import ZMQ

/// A worker's life outside the training loop: binding (with CURVE when it has a key), HELLO,
/// waiting for ASSIGN and START, building its stage, and — after a RESET because another
/// stage failed — dropping it and saying HELLO again.
extension Worker {
  /// Runs the worker to the end; returns normally after a STOP, throws on a fatal problem.
  public func run() throws {
    if let keys = options.curve {
      guard let schedulerKey = options.schedulerKey else {
        throw RuntimeError("a worker with a key needs the scheduler's public key too: pass --scheduler-key (or STAGEWISE_SCHEDULER_KEY)")
      }
      zap = try ZAPHandler(context: context, allowed: nil) { [log] key, address in
        log("refused a peer at \(address): key \(key) is not a neighbour of this stage")
      }
      try dataIn.secure(.server(keys))
      try gradIn.secure(.server(keys))
      try control.secure(.client(keys, serverKey: schedulerKey))
    }
    try checkExposure(
      bind: options.bindHost, secured: options.curve != nil, insecure: options.insecure,
      fix: "give the worker a key (--key, from `stagewise keygen`) and the scheduler's (--scheduler-key)")
    try dataIn.setMaximumMessageSize(Protocol.maxFrameBytes)
    try dataIn.bind("tcp://\(options.bindHost):*")
    try gradIn.setMaximumMessageSize(Protocol.maxFrameBytes)
    try gradIn.bind("tcp://\(options.bindHost):*")
    // Others reach our sockets by the advertised host, on the ports the system chose.
    let host = advertisedHost(bind: options.bindHost, advertise: options.advertiseHost)
    dataEndpoint = "tcp://\(host):\(dataIn.boundPort)"
    gradEndpoint = "tcp://\(host):\(gradIn.boundPort)"
    try control.connect(options.scheduler)
    try sayHello()
    log("registering with \(options.scheduler) (data endpoint \(dataEndpoint), OpenBLAS core \(BLAS.coreName))")
    while true {
      let assign = try awaitControl([.assign, .reset], timeout: options.registrationTimeout, waitingFor: "a stage assignment")
      if assign.kind == .reset {  // another failure while waiting: still waiting, say so
        try sayHello()
        continue
      }
      try setUp(try assign.body(Assignment.self))
      if let checkpoint = assignment.restoreFrom {
        let metadata = try stage.restore(from: checkpoint, config: config)
        trainStep = metadata["step"].flatMap(Int.init) ?? 0
        log("restored from \(checkpoint) (step \(trainStep))")
      }
      try send(Message(kind: .ready, body: Ready(stage: assignment.stage, parameterCount: stage.store.count)))
      let go = try awaitControl([.start, .reset], timeout: .seconds(600), waitingFor: "START")
      if go.kind == .start {
        lastHeardMicros = WallClock.micros()
        try loop()
      } else {
        resetReason = (try? go.body(StopBody.self).reason) ?? "reset"
      }
      guard let reason = resetReason else { break }
      log("reset (\(reason)): dropping stage \(assignment.stage) and waiting for a new assignment")
      retiredJobs.insert(assignment.job)
      resetReason = nil
      try sayHello()
    }
    try finish()
  }

  func sayHello() throws {
    let hello = Hello(
      protocolVersion: options.protocolVersion, host: ProcessInfo.processInfo.hostName,
      pid: getpid(), dataEndpoint: dataEndpoint, gradEndpoint: gradEndpoint, requestedStage: options.requestedStage,
      publicKey: options.curve?.publicKey, blasCore: BLAS.coreName)
    try send(Message(kind: .hello, body: hello))
  }

  /// Waits for a control message of one of `kinds`, answering heartbeats meanwhile; ERROR
  /// and silence past the timeout are fatal (a heartbeat from the scheduler restarts the clock).
  func awaitControl(_ kinds: Set<Kind>, timeout: Duration, waitingFor what: String) throws -> Message {
    var deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
      if Signals.stopRequested != nil { throw RuntimeError("interrupted while waiting for \(what)") }
      guard try !Socket.pollReadable([control], timeoutMilliseconds: 100).isEmpty else { continue }
      guard let message = accepted(try control.receive(), plane: "control") else { continue }
      lastHeardMicros = WallClock.micros()
      if kinds.contains(message.kind) { return message }
      switch message.kind {
      case .error: throw RuntimeError("the scheduler refused this worker: \(try message.body(ErrorBody.self).message)")
      case .heartbeat:  // answered, so that the scheduler knows we are waiting, not dead
        try answerHeartbeat(message)
        if (try? message.body(Heartbeat.self))?.echoMicros == nil {
          try send(Message(kind: .heartbeat, body: Heartbeat(sentMicros: WallClock.micros())))
        }
        deadline = ContinuousClock.now + timeout
      case .stop: throw RuntimeError("the scheduler stopped the job while this worker waited for \(what): \((try? message.body(StopBody.self).reason) ?? "")")
      default: count("unexpected-\(message.kind)")
      }
    }
    throw RuntimeError("no answer from \(options.scheduler) within \(timeout) while waiting for \(what): is the scheduler running and reachable? (With CURVE on either side, both need it: security.curve there, --key and --scheduler-key here, and this worker's public key on its allow-list.)")
  }

  func setUp(_ assignment: Assignment) throws {
    self.assignment = assignment
    // A fresh stage: nothing carries over from an assignment a reset ended.
    (trainStep, expectedSequence, lastSequence, arrivals, replayStalled) = (0, 0, 0, 0, false)
    (backprop, batchComputeMicros, window, replay) = (BackpropState(), 0, StatsWindow(), nil)
    config = try RunConfig.parse(yaml: assignment.config)
    BLAS.setThreads(config.training.threads)
    stage = try config.buildStage(assignment.stage, sampleShape: assignment.sampleShape, classes: assignment.classes)
    isLast = assignment.stage == assignment.stageCount - 1
    // Once, before any peer connects: libzmq pushes a changed limit into live pipes from
    // this thread, which crashed its I/O thread when a pipe's peer had just died (a reset).
    if !dataInConfigured {
      try dataIn.setHighWaterMarks(send: Int32(config.daemon.highWaterMark), receive: Int32(config.daemon.highWaterMark))
      dataInConfigured = true
    }
    zap?.allow(Set(assignment.peerKeys ?? []))
    downstream = try pushSocket(to: assignment.downstream, serverKey: assignment.downstreamKey)
    gradOut = try assignment.upstreamGradient.map { try pushSocket(to: $0, serverKey: assignment.upstreamGradientKey) }
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

  /// A PUSH socket to a neighbour's data or gradient endpoint (CURVE when this worker has a
  /// key, with the neighbour's public key from ASSIGN).
  func pushSocket(to endpoint: String, serverKey: String?) throws -> Socket {
    let socket = try Socket(context, .push)
    if let keys = options.curve {
      guard let serverKey else {
        throw RuntimeError("the scheduler sent no key for \(endpoint): it runs without CURVE while this worker has a key")
      }
      try socket.secure(.client(keys, serverKey: serverKey))
    }
    try socket.setHighWaterMarks(send: Int32(config.daemon.highWaterMark), receive: Int32(config.daemon.highWaterMark))
    try socket.setTimeouts(receiveMilliseconds: 200, sendMilliseconds: 200)
    try socket.connect(endpoint)
    return socket
  }
}
