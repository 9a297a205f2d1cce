import Foundation
import Learning
import Telemetry
import Wire
import ZMQ

/// The control plane seen from the scheduler: HELLO and registration, ASSIGN, heartbeats both
/// ways, statistics, traces and BYE, and every control message refused with its reason.
extension Scheduler {
  func serviceControl() throws {
    while try !Socket.pollReadable([control], timeoutMilliseconds: 0).isEmpty {
      var frames = try control.receive()
      guard frames.count >= 2 else {
        reject("no-identity", "control message without a routing identity")
        continue
      }
      let identity = frames.removeFirst()
      let accepted = rejections.accept(frames, on: "control") { error in
        if case .versionMismatch = error {  // tell the peer why, in its own words
          try? control.send([identity] + Message(kind: .error, body: ErrorBody(message: "refused: \(error)")).encode())
        }
      }
      guard let message = accepted else { continue }
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
    if message.kind != .heartbeat {
      do throws(WireError) {
        try jobs.check(message, current: job)
      } catch {
        return reject(error.reason, "\(message.kind) from stage \(stage): \(error)")
      }
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
      // A malformed goodbye is one worker's bad message, not the end of the run.
      guard let bye = try? message.body(Bye.self) else { return reject("bad-body", "BYE body from stage \(stage)") }
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
    for stage in 0..<stageCount {
      let downstream = stage + 1 < stageCount ? registry.members[stage + 1]!.hello.dataEndpoint : sinkEndpoint
      var assignment = Assignment(
        job: job, stage: stage, stageCount: stageCount, config: config.yaml(), sampleShape: train.sampleShape,
        classes: train.classes, batchesPerEpoch: plan.trainOrder.batchesPerEpoch, downstream: downstream,
        runDirectory: directory.path, originMicros: originMicros, normalisation: train.normalisation,
        floatImages: train.raw.isFloat,
        handoff: handoffs[stage], nextHandoff: stage + 1 < stageCount ? handoffs[stage + 1] : nil,
        upstreamGradient: config.method.returnsInputGradients && stage > 0 ? registry.members[stage - 1]!.hello.gradEndpoint : nil,
        restoreFrom: resume.flatMap { $0.checkpoints.indices.contains(stage) ? $0.checkpoints[stage] : nil },
        maxInFlight: maxInFlight)
      let isLast = stage == stageCount - 1
      if config.method == .dfa && isLast { assignment.feedbackTargets = (0..<stage).map { registry.members[$0]!.hello.gradEndpoint } }
      if let ours = curveKeys?.publicKey {  // whom it connects to, and who may connect to it
        let key = { (stage: Int) in self.registry.members[stage]!.hello.publicKey! }
        // Who sends to our gradient socket: the next stage (e2e, DNI), the last one (DFA).
        let feedbackFrom = isLast ? nil : config.method.returnsInputGradients ? stage + 1 : config.method == .dfa ? stageCount - 1 : nil
        assignment.downstreamKey = stage + 1 < stageCount ? key(stage + 1) : ours
        assignment.upstreamGradientKey = assignment.upstreamGradient != nil ? key(stage - 1) : nil
        assignment.feedbackTargetKeys = assignment.feedbackTargets != nil ? (0..<stage).map(key) : nil
        assignment.peerKeys = [stage == 0 ? ours : key(stage - 1)] + (feedbackFrom.map { [key($0)] } ?? [])
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
    rejections.add(reason, detail)
  }
}
