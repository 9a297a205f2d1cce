import Learning
import Linalg
import NN
import Telemetry
import Wire
import ZMQ

/// Everything a worker has only while it holds a stage: made from ASSIGN, dropped whole by a
/// RESET, so nothing of one assignment leaks into the next. What outlives it belongs to the
/// process (the worker): its sockets, its rejection counts, its bytes sent, the jobs it retired.
final class StageSession {
  let assignment: Assignment
  let config: RunConfig
  let stage: Stage
  let isLast: Bool
  /// Where the stage's output goes (the next stage, or the scheduler's sink), and e2e's
  /// gradients (the previous stage; nil for stage 0 and the local methods).
  let downstream: Socket
  let gradientsOut: Socket?
  /// DFA, the last stage: a PUSH into every earlier stage's gradient socket (PUSH, never PUB,
  /// which would drop).
  let feedbackOut: [Socket]
  let statsIntervalMicros: Int64
  /// What arrives with this stage's input, and what it sends on (nil: last stage).
  let handoff: StageHandoff
  let nextHandoff: Handoff?

  var trainStep = 0
  /// The data plane's sequence numbers: the next one expected, the last one handled.
  var expectedSequence: UInt64 = 0
  var lastSequence: UInt64 = 0
  var totals: PhaseTotals
  var trace: TraceRecorder
  var window = StatsWindow()
  /// The replay schedule (stages after the first): DGL's buffer of recent inputs.
  var replay: ReplayState?
  /// e2e and GPipe: the activations kept until their gradients return.
  var backprop = BackpropState()
  /// e2e: compute time of the current batch so far (for the straggler experiment).
  var batchComputeMicros: Int64 = 0
  /// DFA and DNI, stages before the last: the batches sent forward whose feedback has not
  /// come back yet (twice the batches that can be in flight, so only lost feedback evicts).
  var pending: FeedbackStore<PendingBatch>?
  /// Lockstep: since when the stage has waited for a batch's feedback.
  var feedbackWaitSince: Int64?

  /// Builds the stage and connects its outputs (as CURVE clients when `keys` is given).
  init(_ assignment: Assignment, context: Context, keys: CurveKeyPair?) throws {
    self.assignment = assignment
    config = try RunConfig.parse(yaml: assignment.config)
    BLAS.setThreads(config.training.threads)
    stage = try config.buildStage(assignment.stage, sampleShape: assignment.sampleShape, classes: assignment.classes)
    isLast = assignment.stage == assignment.stageCount - 1
    func curve(_ endpoint: String, _ serverKey: String?) throws -> (keys: CurveKeyPair, serverKey: String)? {
      guard let keys else { return nil }
      guard let serverKey else {
        throw RuntimeError("the scheduler sent no key for \(endpoint): it runs without CURVE while this worker has a key")
      }
      return (keys, serverKey)
    }
    let highWaterMark = config.daemon.highWaterMark
    downstream = try SocketRecipes.push(
      context, to: assignment.downstream, curve: try curve(assignment.downstream, assignment.downstreamKey),
      highWaterMark: highWaterMark, sendTimeoutMilliseconds: 200)
    gradientsOut = try assignment.upstreamGradient.map {
      try SocketRecipes.push(
        context, to: $0, curve: try curve($0, assignment.upstreamGradientKey), highWaterMark: highWaterMark, sendTimeoutMilliseconds: 200)
    }
    feedbackOut = try (assignment.feedbackTargets ?? []).enumerated().map { k, endpoint in
      try SocketRecipes.push(
        context, to: endpoint, curve: try curve(endpoint, assignment.feedbackTargetKeys?[k]), highWaterMark: highWaterMark,
        sendTimeoutMilliseconds: 200)
    }
    if config.method.hasFeedback && !isLast {
      pending = FeedbackStore(capacity: 2 * max(assignment.maxInFlight ?? 1, 1) + 2)
    }
    statsIntervalMicros = Int64(config.daemon.statsMilliseconds) * 1000
    handoff = StageHandoff(assignment, inputShape: stage.inputShape)
    nextHandoff = assignment.nextHandoff
    trace = TraceRecorder(pid: assignment.stage + 1)
    trace.originMicros = assignment.originMicros
    totals = PhaseTotals(stage: assignment.stage, epoch: 0, phase: .train)
    totals = freshTotals(epoch: 0, phase: .train)
    if config.schedule == .replay && assignment.stage > 0 {
      replay = ReplayState(
        buffer: ReplayBuffer(capacity: config.replay.buffer, maxReuse: config.replay.maxReuse > 0 ? config.replay.maxReuse : nil))
    }
  }

  var isBackprop: Bool { config.method == .e2e }

  /// This stage's output for the next one, detached, under `input`'s header.
  func output(_ activations: Tensor, of pass: Stage.Pass?, for input: Message) -> Message {
    StageHandoff.output(activations, of: pass, for: input, from: assignment.stage, next: nextHandoff ?? Handoff())
  }

  /// Empty totals for a phase (with feedback counts where feedback comes back in training).
  func freshTotals(epoch: Int, phase: Phase) -> PhaseTotals {
    var totals = PhaseTotals(stage: assignment.stage, epoch: epoch, phase: phase)
    if pending != nil && phase == .train { totals.feedback = FeedbackTotals(stage: assignment.stage) }
    return totals
  }

  var learningRate: Float { config.learningRate(step: trainStep, stepsPerEpoch: assignment.batchesPerEpoch) }

  var summary: String {
    "stage \(assignment.stage) of 0…\(assignment.stageCount - 1): \(stage.body.layers.map(\.summary).joined(separator: ", ")); \(stage.store.count) parameters; output → \(assignment.downstream)"
  }
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
