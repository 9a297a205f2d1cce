import Foundation
import Learning
import Linalg
import Memory
import Telemetry
import Wire
import ZMQ

/// The worker's actions outside the training step: binding (with CURVE when it has a key),
/// HELLO, building the assigned stage, and leaving — saving, shipping the trace, BYE.
extension Worker {
  func bindSockets() throws {
    if let keys = options.curve {
      guard let schedulerKey = options.schedulerKey else {
        throw RuntimeError(
          "a worker with a key needs the scheduler's public key too: pass --scheduler-key (or "
            + "STAGEWISE_SCHEDULER_KEY)"
        )
      }
      zap = try SocketRecipes.secureServers(
        [dataIn, gradIn], keys: keys, context: context, allowed: nil,
        who: "a neighbour of this stage", log: log)
      try control.secure(.client(keys, serverKey: schedulerKey))
    }
    try checkExposure(
      bind: options.bindHost, secured: options.curve != nil, insecure: options.insecure,
      fix:
        "give the worker a key (--key, from `stagewise keygen`) and the scheduler's "
        + "(--scheduler-key)"
    )
    for socket in [dataIn, gradIn] {
      try socket.setMaximumMessageSize(Protocol.maxFrameBytes)
      try socket.bind("tcp://\(options.bindHost):*")
    }
    // Others reach our sockets by the advertised host, on the ports the system chose.
    let host = advertisedHost(bind: options.bindHost, advertise: options.advertiseHost)
    dataEndpoint = "tcp://\(host):\(dataIn.boundPort)"
    gradEndpoint = "tcp://\(host):\(gradIn.boundPort)"
    try control.connect(options.scheduler)
  }

  func sayHello() throws {
    let hello = Hello(
      protocolVersion: options.protocolVersion, host: ProcessInfo.processInfo.hostName,
      pid: getpid(), dataEndpoint: dataEndpoint, gradEndpoint: gradEndpoint,
      requestedStage: options.requestedStage,
      publicKey: options.curve?.publicKey, blasCore: BLAS.coreName)
    try sendControl(Message(kind: .hello, body: hello))
  }

  /// ASSIGN: a fresh session (nothing carries over from an assignment a reset ended), its
  /// checkpoint restored when resuming (StageSession); then READY.
  func setUp(_ assignment: Assignment) throws {
    let s = try StageSession(assignment, context: context, keys: options.curve)
    // Once, before the first peer connects: libzmq pushes a changed limit into live pipes
    // from this thread, which crashed its I/O thread when a pipe's peer had just died (a reset).
    if !dataInConfigured {
      let mark = Int32(s.config.daemon.highWaterMark)
      try dataIn.setHighWaterMarks(send: mark, receive: mark)
      dataInConfigured = true
    }
    zap?.allow(Set(assignment.peerKeys ?? []))
    s.trace.offsetMicros = clock.offsetMicros
    log(s.summary)
    if let checkpoint = assignment.restoreFrom {
      log("restored from \(checkpoint) (step \(s.machine.step))")
    }
    session = s
    try handle(
      .built(
        heartbeatMicros: Int64(s.config.daemon.heartbeatMilliseconds) * 1000,
        liveness: Int64(s.config.daemon.liveness)))
  }

  /// Sends the trace recorded so far to the scheduler, in chunks, and forgets it.
  func shipTrace(_ s: StageSession) throws {
    while !s.trace.events.isEmpty {
      try sendControl(
        Message(
          kind: .trace,
          body: TraceChunk(stage: s.assignment.stage, events: s.trace.drain(upTo: 5000))))
    }
  }

  /// Saves the stage (final weights after a finished run, else the last weights beside the
  /// epoch checkpoints), ships the trace, says BYE, and gives the sockets time to flush.
  func finish(_ s: StageSession, reason: String) throws {
    let finished = reason == "finished"
    let path = finished ? finalCheckpointPath(s) : interruptedCheckpointPath(s)
    var saved: String?
    var saveError: String?
    // The stage's first replica writes its weights; the others' are the same at the last mean.
    if s.writesCheckpoints {
      do {
        let epochs =
          s.config.training.epochs
          * (s.config.schedule == .sequential ? s.assignment.stageCount : 1)
        try saveCheckpoint(s, to: path, epochsDone: finished ? epochs : nil)
        saved = path
      } catch {
        saveError =
          "stage \(s.assignment.stage) could not save its \(finished ? "final" : "last") weights "
          + "(\(path)): \(error)"
        log(saveError!)
      }
    }
    try shipTrace(s)
    let replay = s.machine.replayStatistics
    var bye = Bye(
      stage: s.assignment.stage, checkpoint: saved, rejected: rejections.counts,
      traceDropped: s.trace.dropped,
      reason: reason, replay: replay, peakResidentBytes: ProcessMemory.peakResidentBytes,
      bytesSent: bytesSent)
    bye.bytesSentUpstream = bytesSentUpstream
    bye.saveError = saveError
    try sendControl(Message(kind: .bye, body: bye))
    try control.setLinger(milliseconds: 5000)  // let BYE and the trace leave
    logLastWords(replay)
    log(
      "stage \(s.assignment.stage) done after \(s.machine.step) steps; weights in "
        + "\(saved ?? "(not saved)")"
    )
  }

  /// The replay buffer's figures and the messages refused, in the worker's log.
  func logLastWords(_ replay: ReplayStatistics?) {
    if let stats = replay {
      log(
        String(
          format:
            "replay: %d draws, %d stalls, mean age %.1f producer steps (max %d), %.2f uses per "
            + "entry",
          stats.draws, stats.stalls, stats.meanAge, stats.maxAge, stats.meanUses))
    }
    let counts = rejections.counts
    if !counts.isEmpty {
      let lines = counts.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }
      log("rejected messages: \(lines.joined(separator: ", "))")
    }
  }
}
