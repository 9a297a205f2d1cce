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
        if s.pending!.wasEvicted(message.sequence) { return nil }  // stale: counted below, not an error
        throw .unexpected("feedback for sequence \(message.sequence), which this stage is not holding")
      }
      let tensor =
        isError
        ? try message.expect(.error, .f32, sampleShape: [s.stage.classes], batch: held.entry.labels.count)
        : try message.expect(.gradient, .f32, sampleShape: s.stage.outputShape, batch: held.entry.labels.count)
      guard tensor.floats.allSatisfy(\.isFinite) else { throw .unexpected("\(message.kind) with a value that is not finite") }
      return (message, tensor)
    }
    guard let checked else { return }
    guard let (message, tensor) = checked else {
      s.totals.feedback?.stale += 1
      return
    }
    let (held, staleness) = s.pending!.take(message.sequence)!
    let feedback = Tensor(tensor)
    let lr = s.config.learningRate(step: held.step, stepsPerEpoch: s.assignment.batchesPerEpoch)
    let t0 = WallClock.micros()
    let loss: Float
    if isError {
      loss = s.stage.trainOnError(held.entry.pass!, error: feedback, learningRate: lr)
      s.trainStep += 1
    } else {
      loss = s.stage.synthesiser!.train(held.entry.output, labels: held.entry.labels, target: feedback, learningRate: lr)
    }
    let t1 = WallClock.micros()
    s.trace.record(isError ? "error-update" : "synthesiser", startMicros: t0, endMicros: t1)
    s.totals.add(loss: loss, correct: 0, samples: held.entry.labels.count)
    s.totals.feedback?.applied(staleness: staleness)
    s.window.add(busyMicros: t1 - t0, loss: loss, samples: 0)
  }

  /// Before a marker that saves (the epoch's end, a mid-epoch cut): the feedback for every
  /// batch still held, so that what is saved and evaluated has trained on all of them. The
  /// wait is bounded (the liveness window); what has not come by then is stale.
  func drainFeedback(_ s: StageSession) throws {
    guard let pending = s.pending, !pending.isEmpty else { return }
    let start = WallClock.micros()
    let limit = Int64(s.config.daemon.heartbeatMilliseconds * s.config.daemon.liveness) * 1000
    while !s.pending!.isEmpty, WallClock.micros() - start < limit {
      if case .training = life.state {} else { return }
      let ready = try Socket.pollReadable([control, gradIn], timeoutMilliseconds: 50)
      if ready.contains(1) { try handleFeedback(s) }
      if ready.contains(0) { try serviceControl() }
      try handle(.tick(nowMicros: WallClock.micros()))
    }
    s.trace.record("feedback-wait", startMicros: start, endMicros: WallClock.micros())
    let abandoned = s.pending!.abandon()
    if abandoned > 0 {
      s.totals.feedback?.stale += abandoned
      log("\(abandoned) batches' feedback did not come within \(limit / 1_000_000) s of the marker: counted stale")
    }
  }
}
