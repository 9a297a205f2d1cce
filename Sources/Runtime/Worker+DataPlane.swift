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
    if s.assignment.replicas == nil { s.expectedSequence = message.sequence + 1 }
    s.lastSequence = message.sequence
    let sender = Int(message.replica)
    guard let next = s.alignment.take(message, from: sender, isMarker: message.kind == .marker)
    else { return }  // a marker's copy, or what waits until every sender's copy came
    try hand(next, s)
  }

  /// What waited for a marker's copies, once they all came.
  func takeHeld(_ s: StageSession) throws {
    guard let next = s.alignment.release() else { return }
    try hand(next, s)
  }

  /// A checked, lined-up batch or marker to the stage machine.
  func hand(_ message: Message, _ s: StageSession) throws {
    // Checked here, in the order the machine takes them: what a marker held back comes after
    // the marker, and so does its copy sent again.
    if message.kind == .marker { s.takenSince = [] } else if try takenAlready(message, s) { return }
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
  /// shift this stage's notion of where the stream is. With replicas in the job, batches reach
  /// a stage from several senders and in the order they were done, not fed: the sender must
  /// be one of this stage's, and the order is not checked.
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
    if s.assignment.replicas != nil {
      guard Int(message.replica) < s.alignment.senders else {
        throw .unexpected(
          "a batch from replica \(message.replica) of \(s.alignment.senders) senders")
      }
    } else if message.sequence != s.expectedSequence {
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
  /// error from the last, a replica's ACK or a peer replica's state. What comes for a batch
  /// the stage gave up on is dropped.
  func takeFeedback(_ s: StageSession) throws {
    guard let frames = try gradIn.tryReceive() else { return }
    let checked = rejections.accept(frames, on: "feedback") { m throws(WireError) in
      switch m.kind {
      case .ack: try acknowledged(m, s)
      case .state: try peerStateEvent(m, s)
      default: try feedbackEvent(m, s)
      }
    }
    try releaseGatedMarker(s)
    guard let checked, let event = checked else { return }
    try drive(s, event)
  }

  /// A replica of the next stage took a batch this one sent it: the router learns its pace.
  func acknowledged(_ message: Message, _ s: StageSession) throws(WireError) -> StageRun.Event? {
    try jobs.check(message, current: s.assignment.job)
    if s.router?.isDropped(Int(message.replica)) == true { return nil }  // late, from the dead
    guard message.stage == UInt16(s.assignment.stage + 1),
      s.router?.acknowledged(
        message.sequence, by: Int(message.replica), atMicros: WallClock.micros())
        == true
    else {
      throw .unexpected(
        "ACK from stage \(message.stage) replica \(message.replica) for sequence "
          + "\(message.sequence), which it was not sent")
    }
    return nil
  }

  /// Another replica of this stage sent its state: checked (the stage, a peer, its length,
  /// finite values), then the machine's event.
  func peerStateEvent(_ message: Message, _ s: StageSession) throws(WireError) -> StageRun.Event? {
    try jobs.check(message, current: s.assignment.job)
    let replica = Int(message.replica)
    guard message.stage == UInt16(s.assignment.stage), replica != s.place.index,
      replica < s.place.count
    else {
      throw .unexpected("STATE from stage \(message.stage) replica \(replica), not a peer")
    }
    let round: Marker?
    if message.flags == 0 {
      round = nil
    } else if let flag = MarkerFlag(rawValue: message.flags) {
      round = Marker(Marker.Kind(flag), epoch: Int(message.epoch), batchesDone: Int(message.step))
    } else {
      throw .unexpected("STATE with flags \(message.flags)")
    }
    // A periodic change carries the weights' change; a marker's, the optimizer's buffers too.
    let length = round == nil ? s.stage.summedLength : s.stage.averagedLength
    let values = try message.expect(.state, .f32, sampleShape: [length], batch: 1).floats
    guard values.allSatisfy(\.isFinite) else {
      throw .unexpected("STATE with a value that is not finite")
    }
    let steps = Int(message.sequence)
    return .peerState(
      StageRun.ReplicaState(values: values, steps: steps, round: round), from: replica)
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
      case .save(let cut):
        // A stage's replicas hold one set of weights there: its first replica writes them.
        guard s.writesCheckpoints else { continue }
        try save(cut, s)
      // the scheduler spools it to disk: a long run's memory stays flat
      case .shipTrace: try shipTrace(s)
      // once an epoch: memory stays flat over long runs
      case .returnMemory: Allocator.returnFreedMemory()
      case .span(let name, let start, let end):
        s.trace.record(name, startMicros: start, endMicros: end)
      case .progress(let p):
        s.window.add(busyMicros: p.busyMicros, loss: p.loss, samples: p.samples)
      case .computed(let micros):
        guard s.straggler != nil else { continue }
        let start = WallClock.micros()
        s.straggler?.wait(afterComputing: micros)
        let end = WallClock.micros()
        s.trace.record("straggle", startMicros: start, endMicros: end)
        // A slowed stage is busy while it waits (what a joining worker's choice reads).
        s.window.add(busyMicros: end - start, loss: nil, samples: 0)
      case .note(let text): log(text)
      }
    }
  }

  /// An outgoing message, under the header of the message it answers.
  func send(_ outgoing: StageRun.Outgoing, _ s: StageSession) throws {
    let stage = UInt16(s.assignment.stage)
    switch outgoing {
    case .output(let activations, let pass, _, let input):
      var output = StageHandoff.output(
        activations, of: pass, for: input, from: s.assignment.stage,
        next: s.nextHandoff ?? Handoff())
      output.replica = UInt16(s.place.index)
      let frames = output.encode()
      try post(frames: frames, to: .downstream(route(output, frames, s)), s)
      try acknowledge(input, s)
    case .marker(_, let input):
      s.gatedMarker = input
      try releaseGatedMarker(s)
    case .result(let input):
      // The credit that lets the next batch in: its header names the batch, nothing else.
      try post(input.answer(.result, from: stage), to: .downstream(0), s)
      try acknowledge(input, s)
    case .state(let state): try sendState(state, s)
    case .inputGradient(let dx, let input):
      // To the replica of the previous stage that sent the batch, when it has several.
      let sender = Int(input.replica)
      let to: StageSession.Destination =
        s.acknowledgeOut.isEmpty ? .upstream : .acknowledge(sender)
      guard to != .upstream || s.gradientsOut != nil, !s.alignment.dropped.contains(sender)
      else { return }
      var message = input.answer(.grad, from: stage, tensors: [WireTensor(role: .gradient, dx)])
      (message.microIndex, message.microCount) = (input.microIndex, input.microCount)
      try post(message, to: to, s)
    case .error(let error, let input):
      let message = input.answer(.feedback, from: stage, tensors: [WireTensor(role: .error, error)])
      for k in s.feedbackOut.indices { try post(message, to: .feedback(k), s) }
    }
  }

  /// This replica's change to its live peers: periodic (sequence: own steps) or a marker's
  /// round (the marker in flags, epoch and step).
  func sendState(_ state: StageRun.ReplicaState, _ s: StageSession) throws {
    let values = WireTensor(role: .state, shape: [1, state.values.count], floats: state.values)
    var message = Message(kind: .state, tensors: [values])
    (message.job, message.stage, message.sequence) = (
      s.assignment.job, UInt16(s.assignment.stage), UInt64(state.steps)
    )
    if let round = state.round {
      (message.flags, message.epoch) = (round.kind.flag.rawValue, UInt32(round.epoch))
      message.step = UInt64(round.batchesDone)
    }
    for (r, peer) in s.peersOut.enumerated()
    where peer != nil && !s.machine.droppedPeers.contains(r) {
      try post(message, to: .peer(r), s)
    }
  }

  /// The replica of the next stage a batch goes to (0 when it has one), which keeps it until
  /// that replica acknowledges it.
  func route(_ output: Message, _ frames: [[UInt8]], _ s: StageSession) -> Int {
    guard let r = s.router?.choose() else { return 0 }
    let batch = ReplicaRouter.Sent(
      epoch: Int(output.epoch), isEval: output.kind == .eval,
      samples: output.tensors.first?.shape.first ?? 0, frames: frames)
    s.router!.sent(output.sequence, to: r, atMicros: WallClock.micros(), batch: batch)
    return r
  }

  /// A marker goes on to every live replica of the next stage once they have acknowledged
  /// everything sent before it.
  func releaseGatedMarker(_ s: StageSession) throws {
    guard let marker = s.gatedMarker, s.router?.isDrained != false else { return }
    s.gatedMarker = nil
    for r in s.downstreams.indices where s.router?.isDropped(r) != true {
      try post(marker, to: .downstream(r), s)
    }
  }

  /// With replicas before this stage: whether this batch was taken already (a dead replica
  /// handed it on, and its sender, never told so, sent it again to another replica). It is
  /// acknowledged again, not trained again.
  func takenAlready(_ message: Message, _ s: StageSession) throws -> Bool {
    guard s.alignment.senders > 1 else { return false }
    guard s.takenSince.insert(message.sequence).inserted else {
      log("batch \(message.sequence) came again from replica \(message.replica): taken once")
      try acknowledge(message, s)
      return true
    }
    return false
  }

  /// With replicas here: tells the replica that sent the batch that it is done.
  func acknowledge(_ input: Message, _ s: StageSession) throws {
    guard s.place.count > 1, !s.acknowledgeOut.isEmpty,
      !s.alignment.dropped.contains(Int(input.replica))
    else {
      return
    }
    try post(
      input.answer(.ack, from: UInt16(s.assignment.stage)), to: .acknowledge(Int(input.replica)), s)
  }

  /// Puts a message in the outbox, under this replica's index, and hands on what the sockets
  /// take now.
  func post(_ message: Message, to destination: StageSession.Destination, _ s: StageSession) throws
  {
    var message = message
    message.replica = UInt16(s.place.index)
    try post(frames: message.encode(), to: destination, s)
  }

  /// Puts an encoded message in the outbox and hands on what the sockets take now.
  func post(frames: [[UInt8]], to destination: StageSession.Destination, _ s: StageSession)
    throws
  {
    let bytes = frames.reduce(0) { $0 + $1.count }
    bytesSent += bytes
    if case .downstream = destination {} else { bytesSentUpstream += bytes }
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
