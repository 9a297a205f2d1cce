import NN

/// One stage's training step, written once: what a stage does with each batch, gradient,
/// error and marker that reaches it, for every method and schedule (its `StageRule`). Pure: no
/// sockets, no files, and time only from the clock it is given. The one-process `Trainer`
/// drives one machine per stage through memory, a worker process drives one through ZeroMQ;
/// both perform the same actions, so the daemon equals the trainer by construction.
///
/// `on(event)` computes what the event asks for and returns what to do, in order. An action
/// `.work(w)` is the rest of the step: the caller runs `run(w)` in its turn, after handing the
/// sends before it to its transport — so a pipelined stage's output is on its way before the
/// stage's own backward starts. `Envelope` is the transport's record of a message (a ZeroMQ
/// message, a batch in memory); the machine hands it back with everything sent for it.
///
///     idle ──start──▶ training ──marker, feedback owed──▶ draining ──owed came, or patience out──▶
/// training
///                        └──────────────── stop, reset ────────────────▶ over
public struct StageMachine<Envelope> {
  public enum Event {
    case start
    case train(Stage.Input, BatchTag, Envelope)
    case eval(Stage.Input, BatchTag, Envelope)
    /// From the next stage: ∂L/∂output of a batch this stage holds (e2e, GPipe), or the
    /// gradient at the next stage's input that DNI's synthesiser regresses on.
    case gradient(Tensor, sequence: UInt64, Envelope)
    /// From the last stage (DFA): the output error e [B, classes] of a batch this stage holds.
    case error(Tensor, sequence: UInt64)
    case marker(Marker, Envelope)
    /// Another replica of this stage sent its state (`replica`: its index).
    case peerState(ReplicaState, from: Int)
    /// Another replica of this stage died: the job goes on without it.
    case peerDropped(Int)
    /// Nothing waits at this stage's inputs: a replay draw, when the schedule has them.
    case idle
    /// Time passes: waits for feedback that may never come run out.
    case tick(nowMicros: Int64)
    /// The stage is left (STOP) or dropped (RESET): nothing it was doing goes on.
    case stop
    case reset
  }

  /// What a stage sends, and to whom.
  public enum Outgoing {
    /// To the next stage: the detached output, with what the next stage's method needs of
    /// this pass (its belief, its augmented input; nil under e2e, which sends h alone).
    case output(Tensor, pass: Stage.Pass?, labels: [Int32], Envelope)
    /// To the sink (the last stage): the batch has left the pipeline.
    case result(Envelope)
    case marker(Marker, Envelope)
    /// To the previous stage: the gradient at this stage's input, under the batch's envelope.
    case inputGradient(Tensor, Envelope)
    /// To every earlier stage (DFA): the output error e = ∂L/∂logits [B, classes].
    case error(Tensor, Envelope)
    /// To the stage's other replicas: this one's state.
    case state(ReplicaState)
  }

  /// Where a cut of the run is saved.
  public enum Checkpoint: Equatable {
    /// Mid-epoch, after `batchesDone` of epoch `epoch`'s training batches.
    case step(epoch: Int, batchesDone: Int)
    /// At the end of the training part of an epoch.
    case epoch(epochsDone: Int)
  }

  /// Compute done for a batch, for the live figures: its time, its loss (nil when it comes
  /// later or there is none), its correct count and the samples it trained.
  public struct Progress: Equatable {
    public var busyMicros: Int64
    public var loss: Float?
    public var correct = 0
    public var samples = 0
  }

  public enum Action {
    case send(Outgoing)
    /// The rest of the step: call `run(_:)` once the actions before it are done.
    case work(Work)
    /// A phase's totals, at its marker.
    case report(PhaseTotals)
    case save(Checkpoint)
    /// The epoch's training is over: ship the trace recorded so far.
    case shipTrace
    /// The epoch is over: give freed memory back to the system.
    case returnMemory
    /// A span of this stage's timeline.
    case span(String, startMicros: Int64, endMicros: Int64)
    case progress(Progress)
    /// A batch's step is done after `micros` of compute (where a straggler experiment waits).
    case computed(micros: Int64)
    /// Something the operator should read.
    case note(String)
  }

  /// The rest of a local step, after the forward pass and the early hand-on.
  public struct Work {
    let pass: Stage.Pass
    let input: Stage.Input
    let tag: BatchTag
    let envelope: Envelope
    let learningRate: Float
    let step: Int
    let forwardMicros: Int64
  }

  enum State {
    case idle
    case training
    /// A saving marker waits for the feedback owed for the batches in front of it.
    case draining(Marker, Envelope, sinceMicros: Int64)
    /// A saving marker waits for every replica's state (`states`, by replica, its own in).
    case averaging(Marker, Envelope, states: [Int: ReplicaState], sinceMicros: Int64)
    case over
  }

  public let stage: Stage
  public let rule: StageRule
  public let index: Int
  public let isLast: Bool
  let config: RunConfig
  let batchesPerEpoch: Int
  let clock: () -> Int64
  /// How long the stage waits for feedback it needs before it goes on without it.
  let patienceMicros: Int64
  var state = State.idle
  /// Optimizer steps taken (the learning-rate schedule's clock).
  public internal(set) var step: Int
  var trainTotals: PhaseTotals
  var evalTotals: PhaseTotals
  var backprop = BackpropState()
  /// DFA and DNI, stages before the last: batches sent forward whose feedback is owed.
  var owed: FeedbackStore<OwedBatch>?
  var replay: ReplayState?
  /// Lockstep: since when the stage has waited for a batch's feedback.
  var feedbackWaitSince: Int64?
  var replicas: ReplicaBook

  /// A machine for `stage` (of `config`), its schedule's clock at `step` (a restored
  /// checkpoint's); `maxInFlight` bounds what it may be owed; `replica` is its place among the
  /// stage's replicas.
  public init(
    stage: Stage, config: RunConfig, batchesPerEpoch: Int, maxInFlight: Int, step: Int = 0,
    replica: ReplicaPlace = ReplicaPlace(), clock: @escaping () -> Int64
  ) {
    replicas = ReplicaBook(place: replica, base: step)
    (self.stage, self.config, self.batchesPerEpoch, self.step, self.clock) =
      (stage, config, batchesPerEpoch, step, clock)
    index = stage.index
    isLast = index == config.stages.count - 1
    rule = StageRule(config: config, stage: index)
    patienceMicros = Int64(config.daemon.heartbeatMilliseconds * config.daemon.liveness) * 1000
    if rule.feedback == .error || rule.feedback == .target {
      owed = FeedbackStore(capacity: 2 * max(maxInFlight, 1) + 2)
    }
    if rule.order.replaysWhileIdle {
      let maxReuse = config.replay.maxReuse > 0 ? config.replay.maxReuse : nil
      replay = ReplayState(buffer: ReplayBuffer(capacity: config.replay.buffer, maxReuse: maxReuse))
    }
    trainTotals = PhaseTotals(stage: index, epoch: 0, phase: .train)
    evalTotals = PhaseTotals(stage: index, epoch: 0, phase: .eval)
    trainTotals = freshTotals(.train, epoch: 0)
  }

  // MARK: - What the stage takes now

  /// Whether the stage takes a new batch or marker now: not while it drains at a marker,
  /// holds a batch for its gradient (update locking), or waits in lockstep for feedback.
  public var takesData: Bool {
    guard case .training = state else { return false }
    if rule.step == .onGradient { return !backprop.awaitingGradients }
    if rule.order.awaitsFeedbackBeforeNext, let owed { return owed.isEmpty }
    return true
  }

  /// Whether the stage waits for what comes back before it takes a new batch — update
  /// locking (e2e's gradient, lockstep's feedback) — rather than for a marker's drain.
  public var isLocked: Bool {
    guard case .training = state else { return false }
    return !takesData
  }

  /// Whether something can come back to this stage (gradients, errors, targets).
  public var takesFeedback: Bool {
    switch state {
    case .training, .draining: rule.feedback != nil
    case .idle, .averaging, .over: false
    }
  }

  /// Whether other replicas' states are taken now (there are some, and the stage trains).
  public var takesPeerStates: Bool {
    switch state {
    case .training, .draining, .averaging: replicas.place.count > 1
    case .idle, .over: false
    }
  }

  /// Whether a replay draw is possible now (the caller sends `.idle` when nothing waits).
  public var canReplay: Bool {
    guard case .training = state else { return false }
    return replay?.canDraw ?? false
  }

  /// What may come back for batch `sequence`, as far as this stage knows.
  public enum Expected: Equatable {
    /// A gradient [batch] + the stage's output shape (e2e's, DNI's target).
    case gradient(batch: Int)
    /// DFA's error [batch, classes].
    case error(batch: Int)
    /// The batch was given up on (evicted, or abandoned at a marker): late, to be dropped.
    case late
    /// Nothing: this stage never held that batch.
    case nothing
  }

  public func expected(forSequence sequence: UInt64) -> Expected {
    if let held = backprop.held[sequence] { return .gradient(batch: held.batch) }
    guard let owed else { return .nothing }
    if let held = owed.holds(sequence) {
      return rule.feedback == .error
        ? .error(batch: held.entry.labels.count) : .gradient(batch: held.entry.labels.count)
    }
    return owed.wasEvicted(sequence) ? .late : .nothing
  }

  /// Under e2e, the micro-batch count of the batch under way (nil between batches).
  public var microBatchesUnderWay: Int? { backprop.inBatch ? backprop.microCount : nil }

  /// The replay buffer's figures (the replay schedule).
  public var replayStatistics: ReplayStatistics? { replay?.buffer.statistics }

  // MARK: - Events

  public mutating func on(_ event: Event) -> [Action] {
    switch (event, state) {
    case (_, .over): return []
    case (.stop, _), (.reset, _):
      state = .over
      return []
    case (.start, .idle):
      state = .training
      if replicas.place.count > 1 { openBook() }  // before any step: the shared start
      return []
    case (.start, _), (_, .idle): return []
    case (.train, .training), (.eval, .training), (.marker, .training):
      replay?.stalled = false  // fresh input: the buffer may be drawn from again
      return takeData(event)
    case (.gradient(let gradient, let sequence, let envelope), _):
      return rule.feedback == .target
        ? takeFeedback(gradient, sequence: sequence)
        : backwardHeld(gradient, sequence: sequence, envelope)
    case (.error(let error, let sequence), _): return takeFeedback(error, sequence: sequence)
    case (.peerState(let peer, let replica), _): return takePeerState(peer, from: replica)
    case (.peerDropped(let replica), _): return dropPeer(replica)
    case (.idle, .training): return replayOnce()
    case (.tick(let now), _): return waitedFor(now)
    case (.train, _), (.eval, _), (.marker, _), (.idle, _):
      return []  // not taken while draining: `takesData` said so
    }
  }

  mutating func takeData(_ event: Event) -> [Action] {
    switch event {
    case .train(let input, let tag, let envelope):
      return rule.step == .onGradient
        ? forwardHolding(input, tag, envelope) : trainLocal(input, tag, envelope)
    case .eval(let input, _, let envelope): return evaluate(input, envelope)
    case .marker(let marker, let envelope): return mark(marker, envelope)
    default: return []
    }
  }

  /// The rest of a step that `.work` deferred.
  public mutating func run(_ work: Work) -> [Action] {
    guard case .training = state else { return [] }  // dropped meanwhile: nothing goes on
    return finishLocal(work)
  }

  /// Time passing: a lockstep wait for feedback, or a marker's drain, that has lasted past
  /// the patience gives up on what is owed (counted stale) and goes on.
  mutating func waitedFor(_ now: Int64) -> [Action] {
    if case .averaging = state { return roundOverdue(now) }
    if case .draining(let marker, let envelope, let since) = state {
      return now - since > patienceMicros ? passMarker(marker, envelope) : []
    }
    guard rule.order.awaitsFeedbackBeforeNext, let owed, !owed.isEmpty else {
      feedbackWaitSince = nil
      return []
    }
    guard let since = feedbackWaitSince else {
      feedbackWaitSince = now
      return []
    }
    guard now - since > patienceMicros else { return [] }
    feedbackWaitSince = nil
    return abandonFeedback(why: "in lockstep")
  }

  /// Gives up on every batch still owed, counting it stale.
  mutating func abandonFeedback(why: String) -> [Action] {
    let abandoned = owed?.abandon() ?? 0
    guard abandoned > 0 else { return [] }
    trainTotals.feedback?.stale += abandoned
    let seconds = Double(patienceMicros) / 1e6
    return [
      .note("\(abandoned) batches' feedback did not come within \(seconds) s \(why): counted stale")
    ]
  }

  /// Empty totals for a phase (with feedback counts where feedback comes back in training).
  func freshTotals(_ phase: Phase, epoch: Int) -> PhaseTotals {
    var totals = PhaseTotals(stage: index, epoch: epoch, phase: phase)
    if owed != nil && phase == .train { totals.feedback = FeedbackTotals(stage: index) }
    return totals
  }

  /// The learning rate of the stage's next step.
  public var learningRate: Float { learningRate(atStep: step) }

  func learningRate(atStep step: Int) -> Float {
    config.learningRate(step: step, stepsPerEpoch: batchesPerEpoch)
  }

  /// Restarts the learning-rate schedule's clock (the trainer's `sequential` phases).
  public mutating func restartSchedule() { step = 0 }

  /// The time between `start` and now, and now.
  func since(_ start: Int64) -> (micros: Int64, now: Int64) {
    let now = clock()
    return (now - start, now)
  }
}

/// What a DFA or DNI stage keeps of a batch until its feedback comes back: DFA's pass (the
/// error's backward needs its caches), DNI's output h (the synthesiser's input) — and the
/// labels.
struct OwedBatch {
  var pass: Stage.Pass?
  var output: Tensor
  var labels: [Int32]
}

/// e2e and GPipe: the passes kept until their gradients return, and where the batch is.
struct BackpropState {
  /// Each micro-batch's pass and size, by sequence number.
  var held: [UInt64: (pass: Stage.Pass, batch: Int)] = [:]
  var forwards = 0
  var backwards = 0
  var microCount = 1
  /// Compute time of the batch so far.
  var computeMicros: Int64 = 0

  /// A batch has started (some micro-batch went forward or back) and not been applied yet.
  var inBatch: Bool { forwards > 0 || backwards > 0 }

  /// Between a batch's last forward and its update, the stage waits for gradients only.
  var awaitingGradients: Bool { forwards == microCount && backwards < microCount && forwards > 0 }
}

/// The replay schedule's state: the buffer, fresh inputs counted as producer steps, and
/// whether a draw may happen now.
struct ReplayState {
  var buffer: ReplayBuffer<Stage.Input>
  var arrivals = 0
  /// The buffer had nothing to draw: wait for fresh input.
  var stalled = false
  /// Draws belong between the current epoch's training batches: open from a training batch
  /// to the epoch's train-end marker, closed during evaluation and checkpoints.
  var open = false

  var canDraw: Bool { open && !stalled }

  /// A fresh input, trained on once already, joins the buffer.
  mutating func add(_ input: Stage.Input) {
    buffer.write(input, producerStep: arrivals, uses: 1)
    arrivals += 1
  }

  /// An input to train on again, or nil — then the stage stalls until fresh input arrives.
  mutating func draw() -> Stage.Input? {
    guard let entry = buffer.draw(producerStep: arrivals) else {
      stalled = true
      return nil
    }
    return entry.payload
  }
}
