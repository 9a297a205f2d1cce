import Learning
import NN
import Telemetry
import Wire

/// End-to-end backprop across processes (method e2e): the baseline that local learning is
/// measured against. Stage k keeps each micro-batch's activations until ∂L/∂h_k comes back
/// from stage k+1 on the gradient socket — update locking, measured, not emulated. A batch
/// split into M micro-batches (GPipe) runs all its forwards, then its backwards (fill–drain),
/// gradients accumulating, and one update once all M are back.
struct BackpropState {
  /// Activations (and the micro-batch's size) kept per sequence number until its gradient arrives.
  var pending: [UInt64: (caches: [LayerCache], batch: Int)] = [:]
  var forwards = 0
  var backwards = 0
  var microCount = 1

  /// A batch has started (some micro-batch went forward or back) and not been applied yet.
  var inBatch: Bool { forwards > 0 || backwards > 0 }

  /// Between a batch's last forward and its update, the stage waits for gradients only.
  var awaitingGradients: Bool { forwards == microCount && backwards < microCount && forwards > 0 }
}

extension Worker {
  /// e2e and GPipe: the micro-batch's place in its batch and its share of the batch loss
  /// (0 micro-batches is the M = 1 of plain e2e).
  func checkMicroBatch(_ message: Message, _ s: StageSession) throws(WireError) {
    let count = max(1, Int(message.microCount))
    guard Int(message.microIndex) < count, count <= Protocol.maxMicroBatches else {
      throw .unexpected("micro-batch \(message.microIndex) of \(message.microCount)")
    }
    if s.backprop.inBatch, count != s.backprop.microCount {
      throw .unexpected("micro-batch count \(count) inside a batch of \(s.backprop.microCount)")
    }
    if message.tensor(.share) != nil {
      let share = try message.expect(.share, .f32, sampleShape: [], batch: 1).floats[0]
      guard share.isFinite, share > 0, share <= 1 else { throw .unexpected("micro-batch share \(share) outside (0, 1]") }
    }
  }

  /// A TRAIN micro-batch under e2e: forward and send on (keeping the activations), or, on the
  /// last stage, loss and backward at once, the gradient going back upstream.
  func trainBackprop(_ message: Message, _ s: StageSession) throws {
    let input = s.handoff.input(message)
    if !s.backprop.inBatch { s.backprop.microCount = max(1, Int(message.microCount)) }
    let t0 = WallClock.micros()
    let (h, caches) = s.stage.forwardBody(input.x)
    let t1 = WallClock.micros()
    s.trace.record("forward", startMicros: t0, endMicros: t1)
    s.batchComputeMicros += t1 - t0
    s.backprop.forwards += 1
    guard s.isLast else {
      s.backprop.pending[message.sequence] = (caches, h.batchSize)
      try send(s.output(h, of: nil, for: message), on: s.downstream, s)
      return
    }
    // The batch loss is the mean over the whole batch: each micro-batch counts by its share.
    let share = message.tensor(.share).map { $0.floats[0] } ?? 1
    let result = s.stage.endToEndTail(h, caches, labels: input.labels, lossScale: share, inputGradient: s.assignment.stage > 0)
    let t2 = WallClock.micros()
    s.trace.record("backward", startMicros: t1, endMicros: t2)
    s.batchComputeMicros += t2 - t1
    if let dx = result.inputGradient { try sendGradient(dx, for: message, s) }
    try sendResult(message, s)
    s.totals.add(loss: result.loss, correct: result.correct, samples: input.labels.count)
    s.window.add(busyMicros: t2 - t0, loss: result.loss, samples: input.labels.count)
    try finishMicroBatch(s)
  }

  /// A GRAD from the next stage: backward through the kept activations, gradient upstream.
  func handleGradient(_ s: StageSession) throws {
    let checked = rejections.accept(try gradIn.receive(), on: "gradient") { message throws(WireError) -> (Message, [LayerCache]) in
      try jobs.check(message, current: s.assignment.job)
      guard message.kind == .grad else { throw .unexpected("\(message.kind) on the gradient socket") }
      guard let held = s.backprop.pending[message.sequence] else {
        throw .unexpected("gradient for sequence \(message.sequence), which this stage is not holding")
      }
      _ = try message.expect(.gradient, .f32, sampleShape: s.stage.outputShape, batch: held.batch)
      return (message, held.caches)
    }
    guard let (message, caches) = checked else { return }
    s.backprop.pending[message.sequence] = nil
    let g = Tensor(message.tensor(.gradient)!)
    let t0 = WallClock.micros()
    let dx = s.stage.body.backward(g, caches, s.stage.store, inputGradient: s.assignment.stage > 0)
    let t1 = WallClock.micros()
    s.trace.record("backward", startMicros: t0, endMicros: t1)
    s.batchComputeMicros += t1 - t0
    s.window.add(busyMicros: t1 - t0, loss: nil, samples: g.shape[0])
    if let dx { try sendGradient(dx, for: message, s) }
    try finishMicroBatch(s)
  }

  /// Counts a finished backward; after the batch's last one, the one update.
  func finishMicroBatch(_ s: StageSession) throws {
    s.backprop.backwards += 1
    guard s.backprop.backwards == s.backprop.microCount else { return }
    let lr = s.learningRate
    let t0 = WallClock.micros()
    s.stage.optimizer.update(s.stage.store, learningRate: lr)
    s.trace.record("update", startMicros: t0, endMicros: WallClock.micros())
    straggle(s, computedMicros: s.batchComputeMicros + (WallClock.micros() - t0))
    s.batchComputeMicros = 0
    s.trainStep += 1
    s.backprop = BackpropState()
  }

  func sendGradient(_ dx: Tensor, for input: Message, _ s: StageSession) throws {
    guard let gradientsOut = s.gradientsOut else { return }
    var message = Message(kind: .grad, tensors: [WireTensor(role: .gradient, dx)])
    (message.job, message.stage, message.epoch, message.step, message.sequence) =
      (input.job, UInt16(s.assignment.stage), input.epoch, input.step, input.sequence)
    (message.microIndex, message.microCount) = (input.microIndex, input.microCount)
    try send(message, on: gradientsOut, s)
  }
}
