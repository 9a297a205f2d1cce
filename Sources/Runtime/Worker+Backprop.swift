import Learning
import NN
import Telemetry
import Wire
import ZMQ

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
  var isBackprop: Bool { config.method == .e2e }

  /// A TRAIN micro-batch under e2e: forward and send on (keeping the activations), or, on the
  /// last stage, loss and backward at once, the gradient going back upstream.
  func trainBackprop(_ message: Message) throws {
    let input = stageInput(message)
    if !backprop.inBatch { backprop.microCount = max(1, Int(message.microCount)) }
    let t0 = WallClock.micros()
    let (h, caches) = stage.forwardBody(input.x)
    let t1 = WallClock.micros()
    trace.record("forward", startMicros: t0, endMicros: t1)
    batchComputeMicros += t1 - t0
    backprop.forwards += 1
    guard isLast else {
      backprop.pending[message.sequence] = (caches, h.batchSize)
      var next = message
      next.stage = UInt16(assignment.stage + 1)
      next.tensors = [WireTensor(role: .activations, shape: h.shape, floats: h.storage)] + message.tensors.filter { $0.role != .activations }
      try sendDownstream(next)
      return
    }
    // The batch loss is the mean over the whole batch: each micro-batch counts by its share.
    let share = message.tensor(.stats).map { $0.floats[0] } ?? 1
    let head = stage.head!
    let (logits, headCache) = head.forward(h, belief: nil, stage.store)
    var result = softmaxCrossEntropy(logits: logits, labels: input.labels)
    for i in 0..<result.gradient.count { result.gradient.storage[i] *= share }
    let dh = head.backward(result.gradient, headCache, stage.store)
    let dx = stage.body.backward(dh, caches, stage.store, inputGradient: assignment.stage > 0)
    let t2 = WallClock.micros()
    trace.record("backward", startMicros: t1, endMicros: t2)
    batchComputeMicros += t2 - t1
    if let dx { try sendGradient(dx, for: message) }
    try sendResult(message, loss: result.loss, correct: result.correct, samples: input.labels.count)
    totals.add(loss: result.loss, correct: result.correct, samples: input.labels.count)
    window.add(busyMicros: t2 - t0, loss: result.loss, samples: input.labels.count)
    try finishMicroBatch()
  }

  /// A GRAD from the next stage: backward through the kept activations, gradient upstream.
  func handleGradient() throws {
    let frames = try gradIn.receive()
    let checked = Result { () throws(WireError) -> (Message, [LayerCache]) in
      let message = try Message(frames: frames)
      if retiredJobs.contains(message.job) { throw .staleJob(message.job) }
      guard message.job == assignment.job, message.kind == .grad else { throw .unexpected("\(message.kind) on the gradient socket") }
      guard let held = backprop.pending[message.sequence] else {
        throw .unexpected("gradient for sequence \(message.sequence), which this stage is not holding")
      }
      _ = try message.expect(.gradient, .f32, sampleShape: stage.outputShape, batch: held.batch)
      return (message, held.caches)
    }
    guard case .success(let (message, caches)) = checked else {
      if case .failure(let error) = checked {
        count(error.reason)
        if rejected[error.reason, default: 0] <= 5 { log("rejected a gradient message (\(error.reason)): \(error)") }
      }
      return
    }
    backprop.pending[message.sequence] = nil
    let g = message.tensor(.gradient)!
    let t0 = WallClock.micros()
    let dx = stage.body.backward(Tensor(shape: g.shape, storage: g.floats), caches, stage.store, inputGradient: assignment.stage > 0)
    let t1 = WallClock.micros()
    trace.record("backward", startMicros: t0, endMicros: t1)
    batchComputeMicros += t1 - t0
    window.add(busyMicros: t1 - t0, loss: nil, samples: g.shape[0])
    if let dx { try sendGradient(dx, for: message) }
    try finishMicroBatch()
  }

  /// Counts a finished backward; after the batch's last one, the one update.
  func finishMicroBatch() throws {
    backprop.backwards += 1
    guard backprop.backwards == backprop.microCount else { return }
    let lr = config.learningRate(step: trainStep, stepsPerEpoch: assignment.batchesPerEpoch)
    let t0 = WallClock.micros()
    stage.optimizer.update(stage.store, learningRate: lr)
    trace.record("update", startMicros: t0, endMicros: WallClock.micros())
    straggle(computedMicros: batchComputeMicros + (WallClock.micros() - t0))
    batchComputeMicros = 0
    trainStep += 1
    backprop = BackpropState()
  }

  func sendGradient(_ dx: Tensor, for input: Message) throws {
    guard let gradOut else { return }
    var message = Message(kind: .grad, tensors: [WireTensor(role: .gradient, shape: dx.shape, floats: dx.storage)])
    (message.job, message.stage, message.epoch, message.step, message.sequence) =
      (input.job, UInt16(assignment.stage), input.epoch, input.step, input.sequence)
    (message.microIndex, message.microCount) = (input.microIndex, input.microCount)
    try send(message, on: gradOut)
  }
}
