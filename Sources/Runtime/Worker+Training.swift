import Foundation
import Learning
import Memory
import NN
import Telemetry
import Wire
import ZMQ

/// What a worker does with the data plane under the local methods: train on a batch and send
/// its output on (before its own backward when pipelined), evaluate, replay, close phases.
extension Worker {
  func handleData(_ s: StageSession) throws {
    guard let message = rejections.accept(try dataIn.receive(), on: "data", { m throws(WireError) in try check(m, s); return m }) else { return }
    s.expectedSequence = message.sequence + 1
    s.lastSequence = message.sequence
    switch message.kind {
    case .train where s.isBackprop: try trainBackprop(message, s)
    case .train: try train(message, s)
    case .eval: try evaluate(message, s)
    case .marker: try mark(message, s)
    default: break
    }
  }

  /// Checks what `Message(frames:)` cannot: the job, the kind, the shapes, the order. The
  /// sequence must be exactly the next one: a stale or forged far-ahead message cannot
  /// shift this stage's notion of where the stream is.
  func check(_ message: Message, _ s: StageSession) throws(WireError) {
    try jobs.check(message, current: s.assignment.job)
    guard [.train, .eval, .marker].contains(message.kind) else { throw .unexpected("\(message.kind) on a data socket") }
    if message.kind == .marker {
      guard MarkerFlag(rawValue: message.flags) != nil else { throw .unexpected("unknown marker flag \(message.flags)") }
    } else {
      try s.handoff.check(message)
      if s.isBackprop && message.kind == .train { try checkMicroBatch(message, s) }
    }
    guard message.sequence == s.expectedSequence else {
      throw .outOfOrder(expected: s.expectedSequence, got: message.sequence)
    }
  }

  func train(_ message: Message, _ s: StageSession) throws {
    let input = s.handoff.input(message)
    // `sequential`: the flags name the one stage that trains; the others only pass data on,
    // in their inference form (a frozen stage's running statistics and dropout stay as they are).
    if let active = TrainFlags.activeStage(message.flags), active != s.assignment.stage {
      let pass = s.stage.forward(input, training: false)
      if s.isLast { try sendResult(message, s) } else { try sendOn(message, pass, s) }
      return
    }
    s.replay?.open = true
    let (lr, step) = (s.learningRate, s.trainStep)
    let t0 = WallClock.micros()
    let pass = s.stage.forward(input)
    let t1 = WallClock.micros()
    s.trace.record("forward", startMicros: t0, endMicros: t1)
    // Pipelined: downstream starts now, before our backward. Lockstep is the locked
    // control: one stage computes at a time, so the batch moves on after our update (a DFA
    // hidden stage updates only when its error comes back: it hands on at once).
    let handOnEarly = s.config.schedule != .lockstep || !s.stage.trainsAtForward
    if !s.isLast && handOnEarly { try sendOn(message, pass, s) }
    var result: LossResult?
    var computed = t1 - t0
    if s.stage.trainsAtForward {
      let t2 = WallClock.micros()
      // DNI: the gradient at our input is the previous stage's synthesiser target.
      let (local, dx) = s.stage.localStep(pass, labels: input.labels, inputGradient: s.gradientsOut != nil)
      let t3 = WallClock.micros()
      if let dx { try sendGradient(dx, for: message, s) }
      let t4 = WallClock.micros()
      s.stage.optimizer.update(s.stage.store, learningRate: lr)
      let t5 = WallClock.micros()
      s.trace.record("backward", startMicros: t2, endMicros: t3)
      s.trace.record("update", startMicros: t4, endMicros: t5)
      computed += (t3 - t2) + (t5 - t4)
      result = local
    }
    // The step clock counts batches taken in (a DFA hidden stage's update for this batch comes
    // with its error, at this batch's step).
    s.trainStep += 1
    straggle(s, computedMicros: computed)
    if !s.isLast && !handOnEarly { try sendOn(message, pass, s) }
    // DFA: the last stage's output error, ∂L/∂logits = (softmax − onehot)/B, to every earlier stage.
    if let result, !s.feedbackOut.isEmpty { try sendError(result.gradient, for: message, s) }
    if s.isLast { try sendResult(message, s) }
    keepForFeedback(pass, labels: input.labels, sequence: message.sequence, step: step, s)
    s.replay?.add(input)
    // A stage whose feedback comes back reports its loss (synthesiser's, DFA's surrogate) then;
    // a DNI hidden stage has trained on the batch already.
    if let result, s.pending == nil { s.totals.add(loss: result.loss, correct: result.correct, samples: input.labels.count) }
    if s.pending != nil && s.stage.trainsAtForward { s.totals.countBatch(samples: input.labels.count) }
    s.window.add(busyMicros: computed, loss: s.pending == nil ? result?.loss : nil, samples: input.labels.count)
  }

  /// The straggler experiment: a slowed stage waits out (slowdown − 1) × its compute time,
  /// traced as `straggle` so it counts as neither work nor waiting for input.
  func straggle(_ s: StageSession, computedMicros: Int64) {
    guard s.config.daemon.slowdown > 1, s.config.daemon.slowStage == s.assignment.stage else { return }
    let extra = Double(computedMicros) * (s.config.daemon.slowdown - 1)
    let start = WallClock.micros()
    usleep(UInt32(max(0, extra)))
    s.trace.record("straggle", startMicros: start, endMicros: WallClock.micros())
  }

  /// One replay step: a buffer draw trains the stage again (nothing is sent on); when no
  /// entry can be drawn the stage stalls until fresh input arrives.
  func replayOnce(_ s: StageSession) {
    guard let input = s.replay?.draw() else { return }
    let lr = s.learningRate
    let t0 = WallClock.micros()
    let result = s.stage.trainLocal(input, learningRate: lr).1
    let t1 = WallClock.micros()
    s.trace.record("replay", startMicros: t0, endMicros: t1)
    s.window.add(busyMicros: t1 - t0, loss: result.loss, samples: 0)
  }

  func evaluate(_ message: Message, _ s: StageSession) throws {
    let input = s.handoff.input(message)
    let t0 = WallClock.micros()
    let (pass, logits) = s.stage.infer(input, scoringHead: s.config.scoresHead(ofStage: s.assignment.stage))
    let t1 = WallClock.micros()
    if !s.isLast { try sendOn(message, pass, s) }
    let t2 = WallClock.micros()
    // No logits: a kernel hidden stage (no head) or an inner e2e stage (head never trained).
    let result = logits.map { softmaxCrossEntropy(logits: $0, labels: input.labels) }
    let t3 = WallClock.micros()
    s.trace.record("eval", startMicros: t0, endMicros: t1)
    s.trace.record("eval", startMicros: t2, endMicros: t3)
    if s.isLast { try sendResult(message, s) }
    if let result { s.totals.add(loss: result.loss, correct: result.correct, samples: input.labels.count) }
    s.window.add(busyMicros: (t1 - t0) + (t3 - t2), loss: nil, samples: 0)
  }

  /// A marker closes a phase: report its totals, then pass the marker on.
  func mark(_ message: Message, _ s: StageSession) throws {
    let flag = MarkerFlag(rawValue: message.flags)!
    if flag == .checkpoint || flag == .trainEnd {
      guard try drainFeedback(s) else { return }  // the stage was reset or stopped meanwhile: nothing to save
    }
    if flag == .checkpoint { try saveStepCheckpoint(s, epoch: Int(message.epoch), batchesDone: Int(message.step)) }
    if flag == .trainEnd {
      // The weights evaluated and checkpointed are the ones the epoch's batches trained.
      s.replay?.open = false
      s.replay?.buffer.removeAll()
      try saveEpochCheckpoint(s, epochsDone: Int(message.epoch) + 1)
      try shipTrace(s)  // the scheduler spools it to disk: a long run's memory stays flat
    }
    if flag == .trainEnd || flag == .evalEnd {
      s.totals.epoch = Int(message.epoch)
      s.totals.phase = flag == .trainEnd ? .train : .eval
      try sendControl(Message(kind: .stats, body: StatsBody(live: nil, totals: s.totals)))
      s.totals = s.freshTotals(epoch: Int(message.epoch), phase: flag == .trainEnd ? .eval : .train)
    }
    try send(message, on: s.downstream, s)
    if flag == .evalEnd { Allocator.returnFreedMemory() }  // once an epoch: memory stays flat over long runs
  }

  /// Sends our output on, detached (no gradient comes back), with what the next stage needs.
  func sendOn(_ input: Message, _ pass: Stage.Pass, _ s: StageSession) throws {
    try send(s.output(pass.activations, of: pass, for: input), on: s.downstream, s)
  }

  /// The last stage's word to the scheduler's sink that a batch has left the pipeline: the
  /// credit that lets the next one in (its header names the batch; it carries nothing else).
  func sendResult(_ input: Message, _ s: StageSession) throws {
    var message = Message(kind: .result)
    (message.job, message.stage, message.epoch, message.step, message.sequence) =
      (input.job, UInt16(s.assignment.stage), input.epoch, input.step, input.sequence)
    try send(message, on: s.downstream, s)
  }

  /// Sends on a data-plane socket (activations down, gradients up); while the peer's queue is
  /// full, keeps answering control messages so heartbeats and STOP still get through, and
  /// gives up on the message when the worker stops training.
  func send(_ message: Message, on socket: Socket, _ s: StageSession) throws {
    let frames = message.encode()
    let bytes = frames.reduce(0) { $0 + $1.count }
    bytesSent += bytes
    if socket !== s.downstream { bytesSentUpstream += bytes }
    let start = WallClock.micros()
    while true {
      let outcome = Result { () throws(ZMQError) in try socket.send(frames) }
      if case .failure(let error) = outcome {
        guard error.isTimeout else { throw error }
        try serviceControl()
        try handle(.tick(nowMicros: WallClock.micros()))  // a stage blocked behind a dead one is not dead itself
        if let failure = life.failure { throw RuntimeError(failure) }
        guard case .training = life.state else { return }
        continue
      }
      break
    }
    let end = WallClock.micros()
    if end - start > 50 { s.trace.record("send-blocked", startMicros: start, endMicros: end) }
  }
}
