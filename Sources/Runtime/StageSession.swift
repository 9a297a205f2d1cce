import Learning
import Linalg
import NN
import Telemetry
import Wire
import ZMQ

/// The stage machine a worker drives: its envelope is the ZeroMQ message a batch came in.
typealias StageRun = StageMachine<Message>

/// Everything a worker has only while it holds a stage: made from ASSIGN, dropped whole by a
/// RESET, so nothing of one assignment leaks into the next — the stage machine, the sockets
/// it sends on and what waits to be sent. What outlives it belongs to the process (the
/// worker): its control and input sockets, its rejection counts, its bytes sent, the jobs it
/// retired.
final class StageSession {
  /// Where an outgoing message goes.
  enum Destination: Equatable {
    /// The next stage, or the scheduler's sink.
    case downstream
    /// The previous stage's gradient socket (e2e, DNI).
    case upstream
    /// Earlier stage `k`'s gradient socket (DFA's errors, from the last stage).
    case feedback(Int)
  }

  let assignment: Assignment
  let config: RunConfig
  var machine: StageRun
  var stage: Stage { machine.stage }
  let downstream: Socket
  let gradientsOut: Socket?
  /// DFA, the last stage: a PUSH into every earlier stage's gradient socket (PUSH, never PUB,
  /// which would drop).
  let feedbackOut: [Socket]
  /// What arrives with this stage's input, and what it sends on (nil: last stage).
  let handoff: StageHandoff
  let nextHandoff: Handoff?
  /// Sends the sockets could not take yet, retried by the loop in order.
  var outbox = Outbox<Destination>()
  /// Since when the outbox has waited for a socket (traced as `send-blocked`).
  var blockedSince: Int64?
  /// The straggler experiment's wait, when this stage is the slowed one.
  let straggler: Straggler?
  let statsIntervalMicros: Int64
  /// The data plane's sequence numbers: the next one expected, the last one handled.
  var expectedSequence: UInt64 = 0
  var lastSequence: UInt64 = 0
  var trace: TraceRecorder
  var window = StatsWindow()

  /// Builds the stage and connects its outputs (as CURVE clients when `keys` is given); the
  /// machine's clock starts at `step` (a restored checkpoint's).
  init(_ assignment: Assignment, context: Context, keys: CurveKeyPair?) throws {
    self.assignment = assignment
    let config = try RunConfig.parse(yaml: assignment.config)
    self.config = config
    BLAS.setThreads(config.training.threads)
    let stage = try config.buildStage(
      assignment.stage, sampleShape: assignment.sampleShape, classes: assignment.classes)
    var step = 0
    if let checkpoint = assignment.restoreFrom {
      step = try stage.restore(from: checkpoint, config: config)["step"].flatMap(Int.init) ?? 0
    }
    machine = StageRun(
      stage: stage, config: config, batchesPerEpoch: assignment.batchesPerEpoch,
      maxInFlight: assignment.maxInFlight ?? 1, step: step, clock: WallClock.micros)
    // Sends never wait: a full queue leaves the message in the outbox for the next turn.
    let push = { (endpoint: String, key: String?) throws -> Socket in
      try SocketRecipes.push(
        context, to: endpoint, curve: try Self.curve(keys, endpoint, key),
        highWaterMark: config.daemon.highWaterMark, sendTimeoutMilliseconds: 0)
    }
    downstream = try push(assignment.downstream, assignment.downstreamKey)
    gradientsOut = try assignment.upstreamGradient.map {
      try push($0, assignment.upstreamGradientKey)
    }
    feedbackOut = try (assignment.feedbackTargets ?? []).enumerated().map { k, endpoint in
      try push(endpoint, assignment.feedbackTargetKeys?[k])
    }
    straggler = Straggler(config: config, stage: assignment.stage)
    statsIntervalMicros = Int64(config.daemon.statsMilliseconds) * 1000
    handoff = StageHandoff(assignment, inputShape: stage.inputShape)
    nextHandoff = assignment.nextHandoff
    trace = TraceRecorder(pid: assignment.stage + 1)
    trace.originMicros = assignment.originMicros
  }

  /// CURVE for a connection to `endpoint`, whose server key the scheduler sent.
  static func curve(_ keys: CurveKeyPair?, _ endpoint: String, _ serverKey: String?) throws
    -> (keys: CurveKeyPair, serverKey: String)?
  {
    guard let keys else { return nil }
    guard let serverKey else {
      throw RuntimeError(
        "the scheduler sent no key for \(endpoint): it runs without CURVE while this worker has "
          + "a key")
    }
    return (keys, serverKey)
  }

  var isLast: Bool { machine.isLast }

  func socket(_ destination: Destination) -> Socket {
    switch destination {
    case .downstream: downstream
    case .upstream: gradientsOut!
    case .feedback(let k): feedbackOut[k]
    }
  }

  var summary: String {
    "stage \(assignment.stage) of 0…\(assignment.stageCount - 1): "
      + "\(stage.body.layers.map(\.summary).joined(separator: ", ")); \(stage.store.count) "
      + "parameters; output → \(assignment.downstream)"
  }
}
