import Foundation
import Learning
import Memory
import NN
import Telemetry
import Wire
import ZMQ

/// The data plane of a worker around its stage machine: messages in, checked and turned into
/// the machine's events; the machine's actions done — sends into the outbox and out as the
/// sockets allow, totals to the scheduler, checkpoints, the trace.
extension Worker {
  // MARK: - In

  /// One message from the previous stage (or the feed): a batch or a marker.
  func takeData(_ s: StageSession) throws {
    guard let frames = try dataIn.tryReceive() else { return }
    let checked = rejections.accept(frames, on: "data") { m throws(WireError) in
      try check(m, s)
      return m
    }
    guard let message = checked else { return }
    s.expectedSequence = message.sequence + 1
    s.lastSequence = message.sequence
    switch message.kind {
    case .train: try drive(s, .train(s.handoff.input(message), message.batchTag, message))
    case .eval: try drive(s, .eval(s.handoff.input(message), message.batchTag, message))
    default:
      let marker = Marker(
        Marker.Kind(MarkerFlag(rawValue: message.flags)!), epoch: Int(message.epoch),
        batchesDone: Int(message.step))
      try drive(s, .marker(marker, message))
    }
  }

  /// Checks what `Message(frames:)` cannot: the job, the kind, the shapes, the order. The
  /// sequence must be exactly the next one: a stale or forged far-ahead message cannot
  /// shift this stage's notion of where the stream is.
  func check(_ message: Message, _ s: StageSession) throws(WireError) {
    try jobs.check(message, current: s.assignment.job)
    guard [.train, .eval, .marker].contains(message.kind) else {
      throw .unexpected("\(message.kind) on a data socket")
    }
    if message.kind == .marker {
      guard MarkerFlag(rawValue: message.flags) != nil else {
        throw .unexpected("unknown marker flag \(message.flags)")
      }
    } else {
      try s.handoff.check(message)
      if message.kind == .train { try checkMicroBatch(message, s) }
    }
    guard message.sequence == s.expectedSequence else {
      throw .outOfOrder(expected: s.expectedSequence, got: message.sequence)
    }
  }

  /// A micro-batch's place in its batch and its share of the batch loss (GPipe; 0
  /// micro-batches is a whole batch).
  func checkMicroBatch(_ message: Message, _ s: StageSession) throws(WireError) {
    let count = max(1, Int(message.microCount))
    guard Int(message.microIndex) < count, count <= Protocol.maxMicroBatches else {
      throw .unexpected("micro-batch \(message.microIndex) of \(message.microCount)")
    }
    if let underWay = s.machine.microBatchesUnderWay, count != underWay {
      throw .unexpected("micro-batch count \(count) inside a batch of \(underWay)")
    }
    if message.tensor(.share) != nil {
      let share = try message.expect(.share, .f32, sampleShape: [], batch: 1).floats[0]
      guard share.isFinite, share > 0, share <= 1 else {
        throw .unexpected("micro-batch share \(share) outside (0, 1]")
      }
    }
  }

  /// One message on the gradient socket: e2e's or DNI's gradient from the next stage, DFA's
  /// error from the last. What comes for a batch the stage gave up on is dropped.
  func takeFeedback(_ s: StageSession) throws {
    guard let frames = try gradIn.tryReceive() else { return }
    let checked = rejections.accept(frames, on: "feedback") { m throws(WireError) in
      try feedbackEvent(m, s)
    }
    guard let checked, let event = checked else { return }
    try drive(s, event)
  }

  /// The machine's event for a message on the gradient socket, nil when it is late.
  func feedbackEvent(_ message: Message, _ s: StageSession) throws(WireError) -> StageRun.Event? {
    try jobs.check(message, current: s.assignment.job)
    let rule = s.machine.rule
    let kind: Kind = rule.feedback == .error ? .feedback : .grad
    guard message.kind == kind else {
      throw .unexpected(
        "\(message.kind) on the gradient socket (\(s.config.method.rawValue) sends \(kind))")
    }
    let tensor: WireTensor
    switch s.machine.expected(forSequence: message.sequence) {
    case .late: return nil  // stale, counted when given up on: dropped, not an error
    case .nothing:
      throw .unexpected("\(kind) for sequence \(message.sequence), which this stage is not holding")
    case .gradient(let batch):
      tensor = try message.expect(.gradient, .f32, sampleShape: s.stage.outputShape, batch: batch)
    case .error(let batch):
      tensor = try message.expect(.error, .f32, sampleShape: [s.stage.classes], batch: batch)
    }
    // A diverged stage's feedback would wreck this one: refused (e2e's gradient is the
    // network's own and goes through as it is).
    if rule.feedback != .gradient, !tensor.floats.allSatisfy(\.isFinite) {
      throw .unexpected("\(message.kind) with a value that is not finite")
    }
    return rule.feedback == .error
      ? .error(Tensor(tensor), sequence: message.sequence)
      : .gradient(Tensor(tensor), sequence: message.sequence, message)
  }

  // MARK: - The machine's actions

  /// Feeds one event to the stage machine and does what it says.
  func drive(_ s: StageSession, _ event: StageRun.Event) throws {
    try perform(s.machine.on(event), s)
  }

  func perform(_ actions: [StageRun.Action], _ s: StageSession) throws {
    for action in actions {
      switch action {
      case .send(let outgoing): try send(outgoing, s)
      case .work(let work): try perform(s.machine.run(work), s)
      case .report(let totals):
        try sendControl(Message(kind: .stats, body: StatsBody(live: nil, totals: totals)))
      case .save(.step(let epoch, let done)):
        try saveStepCheckpoint(s, epoch: epoch, batchesDone: done)
      case .save(.epoch(let epochsDone)): try saveEpochCheckpoint(s, epochsDone: epochsDone)
      // the scheduler spools it to disk: a long run's memory stays flat
      case .shipTrace: try shipTrace(s)
      // once an epoch: memory stays flat over long runs
      case .returnMemory: Allocator.returnFreedMemory()
      case .span(let name, let start, let end):
        s.trace.record(name, startMicros: start, endMicros: end)
      case .progress(let p):
        s.window.add(busyMicros: p.busyMicros, loss: p.loss, samples: p.samples)
      case .computed(let micros):
        guard let straggler = s.straggler else { continue }
        let start = WallClock.micros()
        straggler.wait(afterComputing: micros)
        s.trace.record("straggle", startMicros: start, endMicros: WallClock.micros())
      case .note(let text): log(text)
      }
    }
  }

  /// An outgoing message, under the header of the message it answers.
  func send(_ outgoing: StageRun.Outgoing, _ s: StageSession) throws {
    let stage = UInt16(s.assignment.stage)
    switch outgoing {
    case .output(let activations, let pass, _, let input):
      try post(
        StageHandoff.output(
          activations, of: pass, for: input, from: s.assignment.stage,
          next: s.nextHandoff ?? Handoff()), to: .downstream, s)
    case .marker(_, let input): try post(input, to: .downstream, s)
    case .result(let input):
      // The credit that lets the next batch in: its header names the batch, nothing else.
      try post(input.answer(.result, from: stage), to: .downstream, s)
    case .inputGradient(let dx, let input):
      guard s.gradientsOut != nil else { return }
      var message = input.answer(.grad, from: stage, tensors: [WireTensor(role: .gradient, dx)])
      (message.microIndex, message.microCount) = (input.microIndex, input.microCount)
      try post(message, to: .upstream, s)
    case .error(let error, let input):
      let message = input.answer(.feedback, from: stage, tensors: [WireTensor(role: .error, error)])
      for k in s.feedbackOut.indices { try post(message, to: .feedback(k), s) }
    }
  }

  /// Puts a message in the outbox and hands on what the sockets take now.
  func post(_ message: Message, to destination: StageSession.Destination, _ s: StageSession) throws
  {
    let frames = message.encode()
    let bytes = frames.reduce(0) { $0 + $1.count }
    bytesSent += bytes
    if destination != .downstream { bytesSentUpstream += bytes }
    s.outbox.append(frames, to: destination)
    try flush(s)
  }

  /// Hands the outbox's messages to their sockets, oldest first, as far as they take them;
  /// the time the outbox waited is traced as `send-blocked`.
  func flush(_ s: StageSession) throws {
    let empty = try s.outbox.flush { destination, frames in
      try s.socket(destination).trySend(frames)
    }
    let now = WallClock.micros()
    if !empty {
      s.blockedSince = s.blockedSince ?? now
    } else if let since = s.blockedSince {
      if now - since > 50 { s.trace.record("send-blocked", startMicros: since, endMicros: now) }
      s.blockedSince = nil
    }
  }
}

extension Message {
  /// What a stage needs of a TRAIN or EVAL message's header.
  var batchTag: BatchTag {
    BatchTag(
      sequence: sequence, microIndex: Int(microIndex), microCount: max(1, Int(microCount)),
      share: tensor(.share)?.floats.first,
      activeStage: kind == .train ? TrainFlags.activeStage(flags) : nil)
  }

  /// A message of `kind` from stage `stage` about this one: the same job, epoch, step and
  /// sequence.
  func answer(_ kind: Kind, from stage: UInt16, tensors: [WireTensor] = []) -> Message {
    var message = Message(kind: kind, tensors: tensors)
    (message.job, message.stage, message.epoch, message.step, message.sequence) = (
      job, stage, epoch, step, sequence
    )
    return message
  }
}

extension Marker.Kind {
  /// The kind a MARKER message's flag names.
  init(_ flag: MarkerFlag) {
    switch flag {
    case .trainEnd: self = .trainEnd
    case .evalEnd: self = .evalEnd
    case .checkpoint: self = .checkpoint
    }
  }

  var flag: MarkerFlag {
    switch self {
    case .trainEnd: .trainEnd
    case .evalEnd: .evalEnd
    case .checkpoint: .checkpoint
    }
  }
}
