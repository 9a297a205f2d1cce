import Learning
import NN
import Telemetry
import Wire
import ZMQ

/// What a stage keeps of a batch until its feedback comes back: DFA's pass (the error's
/// backward needs its caches), DNI's output h (the synthesiser's input) — and the labels.
struct PendingBatch {
  var pass: Stage.Pass?
  var output: Tensor
  var labels: [Int32]
}

/// DFA and DNI across processes: feedback flows upstream on the gradient socket while the
/// forward path never waits for it. A hidden stage keeps each batch it sends forward in a
/// bounded `FeedbackStore`; when the batch's feedback arrives — DFA's output error
/// (FEEDBACK, from the last stage), DNI's gradient at the next stage's input (GRAD) — it
/// trains on it: the stage's update (DFA) or the synthesiser's regression step (DNI).
extension Worker {
  /// After a training batch went forward: keep what its feedback will need.
  func keepForFeedback(_ pass: Stage.Pass, labels: [Int32], sequence: UInt64, step: Int, _ s: StageSession) {
    guard s.pending != nil else { return }
    let batch = PendingBatch(pass: s.stage.trainsAtForward ? nil : pass, output: pass.activations, labels: labels)
    s.totals.feedback?.stale += s.pending!.keep(batch, sequence: sequence, step: step)
  }

  /// DFA, the last stage: the output error e = ∂L/∂logits [B, C] to every earlier stage.
  func sendError(_ error: Tensor, for input: Message, _ s: StageSession) throws {
    var message = Message(kind: .feedback, tensors: [WireTensor(role: .error, error)])
    (message.job, message.stage, message.epoch, message.step, message.sequence) =
      (input.job, UInt16(s.assignment.stage), input.epoch, input.step, input.sequence)
    for socket in s.feedbackOut { try send(message, on: socket, s) }
  }

  /// One message on the gradient socket of a DFA or DNI hidden stage.
  func handleFeedback(_ s: StageSession) throws {
    let isError = s.config.method == .dfa
    let checked = rejections.accept(try gradIn.receive(), on: "feedback") { message throws(WireError) -> (Message, WireTensor)? in
      try jobs.check(message, current: s.assignment.job)
      let kind: Kind = isError ? .feedback : .grad
      guard message.kind == kind else { throw .unexpected("\(message.kind) on the gradient socket (\(s.config.method.rawValue) sends \(kind))") }
      guard let held = s.pending!.holds(message.sequence) else {
        if s.pending!.wasEvicted(message.sequence) { return nil }  // stale, counted when evicted: dropped, not an error
        throw .unexpected("feedback for sequence \(message.sequence), which this stage is not holding")
      }
      let tensor =
        isError
        ? try message.expect(.error, .f32, sampleShape: [s.stage.classes], batch: held.entry.labels.count)
        : try message.expect(.gradient, .f32, sampleShape: s.stage.outputShape, batch: held.entry.labels.count)
      guard tensor.floats.allSatisfy(\.isFinite) else { throw .unexpected("\(message.kind) with a value that is not finite") }
      return (message, tensor)
    }
    // Late feedback for an evicted batch is dropped: the batch was counted stale when evicted.
    guard let checked, let (message, tensor) = checked else { return }
    let (held, staleness) = s.pending!.take(message.sequence)!
    let feedback = Tensor(tensor)
    let lr = s.config.learningRate(step: held.step, stepsPerEpoch: s.assignment.batchesPerEpoch)
    let t0 = WallClock.micros()
    let loss: Float
    if isError {
      loss = s.stage.trainOnError(held.entry.pass!, error: feedback, learningRate: lr)
    } else {
      loss = s.stage.synthesiser!.train(held.entry.output, labels: held.entry.labels, target: feedback)
    }
    let t1 = WallClock.micros()
    s.trace.record(isError ? "error-update" : "synthesiser", startMicros: t0, endMicros: t1)
    // A DFA hidden stage trains on the batch now; a DNI one did at forward time.
    if isError { s.totals.countBatch(samples: held.entry.labels.count) }
    s.totals.addLoss(loss, samples: held.entry.labels.count)
    s.totals.feedback?.applied(staleness: staleness)
    s.window.add(busyMicros: t1 - t0, loss: loss, samples: 0)
  }

  /// Before a marker that saves (the epoch's end, a mid-epoch cut): the feedback for every
  /// batch still held, so that what is saved and evaluated has trained on all of them. The
  /// wait is bounded (the liveness window); what has not come by then is stale. Returns false
  /// when the stage stopped training meanwhile (a RESET or STOP): then nothing is to be saved.
  func drainFeedback(_ s: StageSession) throws -> Bool {
    guard let pending = s.pending, !pending.isEmpty else { return true }
    let start = WallClock.micros()
    while !s.pending!.isEmpty, WallClock.micros() - start < feedbackPatienceMicros(s) {
      guard case .training = life.state else { return false }
      let ready = try Socket.pollReadable([control, gradIn], timeoutMilliseconds: 50)
      if ready.contains(1) { try handleFeedback(s) }
      if ready.contains(0) { try serviceControl() }
      try handle(.tick(nowMicros: WallClock.micros()))
    }
    s.trace.record("feedback-wait", startMicros: start, endMicros: WallClock.micros())
    abandonFeedback(s, why: "of the marker")
    guard case .training = life.state else { return false }
    return true
  }

  /// Lockstep: whether the stage has waited longer than the liveness window for a batch's
  /// feedback — then it gives up on it (counted stale) and goes on: feedback refused as
  /// malformed (a NaN error from a diverged last stage, say) would otherwise never come.
  func lockstepWaitExpired(_ s: StageSession, waiting: Bool, now: Int64) -> Bool {
    guard waiting else {
      s.feedbackWaitSince = nil
      return false
    }
    guard let since = s.feedbackWaitSince else {
      s.feedbackWaitSince = now
      return false
    }
    guard now - since > feedbackPatienceMicros(s) else { return false }
    abandonFeedback(s, why: "in lockstep")
    s.feedbackWaitSince = nil
    return true
  }

  /// How long a stage waits for feedback it needs before going on (the liveness window).
  func feedbackPatienceMicros(_ s: StageSession) -> Int64 {
    Int64(s.config.daemon.heartbeatMilliseconds * s.config.daemon.liveness) * 1000
  }

  /// Gives up on every batch still held, counting it stale.
  func abandonFeedback(_ s: StageSession, why: String) {
    let abandoned = s.pending?.abandon() ?? 0
    guard abandoned > 0 else { return }
    s.totals.feedback?.stale += abandoned
    log("\(abandoned) batches' feedback did not come within \(Double(feedbackPatienceMicros(s)) / 1e6) s \(why): counted stale")
  }
}
