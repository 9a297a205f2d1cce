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
    replayOpen = true
    let lr = config.learningRate(step: trainStep, stepsPerEpoch: assignment.batchesPerEpoch)
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
    let lr = config.learningRate(step: trainStep, stepsPerEpoch: assignment.batchesPerEpoch)
    let t0 = WallClock.micros()
    let result = stage.trainLocal(entry.payload, learningRate: lr).1
    let t1 = WallClock.micros()
    trace.record("replay", startMicros: t0, endMicros: t1)
    window.add(busyMicros: t1 - t0, loss: result.loss, samples: 0)
  }

  func evaluate(_ message: Message) throws {
    let input = stageInput(message)
    let t0 = WallClock.micros()
    let (pass, logits) = stage.infer(input, scoringHead: config.scoresHead(ofStage: assignment.stage))
    let t1 = WallClock.micros()
    if !isLast { try forward(message, pass) }
    let t2 = WallClock.micros()
    // No logits: a kernel hidden stage (no head) or an inner e2e stage (head never trained).
    let result = logits.map { softmaxCrossEntropy(logits: $0, labels: input.labels) }
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
    if flag == .checkpoint { try saveStepCheckpoint(epoch: Int(message.epoch), batchesDone: Int(message.step)) }
    if flag == .trainEnd {
      // The weights evaluated and checkpointed are the ones the epoch's batches trained.
      replayOpen = false
      replay?.removeAll()
      try saveEpochCheckpoint(epochsDone: Int(message.epoch) + 1)
      try shipTrace()  // the scheduler spools it to disk: a long run's memory stays flat
    }
    if flag == .trainEnd || flag == .evalEnd {
      totals.epoch = Int(message.epoch)
      totals.phase = flag == .trainEnd ? .train : .eval
      try send(Message(kind: .stats, body: StatsBody(live: nil, totals: totals)))
      totals = PhaseTotals(stage: assignment.stage, epoch: Int(message.epoch), phase: flag == .trainEnd ? .eval : .train)
    }
    try sendDownstream(message)
    if flag == .evalEnd { Allocator.returnFreedMemory() }  // once an epoch: memory stays flat over long runs
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
        if stopReason != nil || resetReason != nil { return }
        try keepAlive(WallClock.micros())  // a stage blocked behind a dead one is not dead itself
        continue
      }
      break
    }
    let end = WallClock.micros()
    if end - start > 50 { trace.record("send-blocked", startMicros: start, endMicros: end) }
  }
}
