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
    /// The next stage (its replica `r`), or the scheduler's sink.
    case downstream(Int)
    /// The previous stage's gradient socket (e2e, DNI).
    case upstream
    /// Earlier stage `k`'s gradient socket (DFA's errors, from the last stage).
    case feedback(Int)
    /// The replica of the previous stage that sent a batch (its ACK; stage 0: the sink).
    case acknowledge(Int)
    /// Another replica of this stage (this one's state).
    case peer(Int)
  }

  let assignment: Assignment
  let config: RunConfig
  var machine: StageRun
  var stage: Stage { machine.stage }
  /// Into the next stage's replicas (one socket each), or the sink.
  let downstreams: [Socket]
  /// Which of the next stage's replicas takes each batch (nil: it has one).
  var router: ReplicaRouter?
  let gradientsOut: Socket?
  /// DFA, the last stage: a PUSH into every earlier stage's gradient socket (PUSH, never PUB,
  /// which would drop).
  let feedbackOut: [Socket]
  /// Replicas: ACKs (when this stage has replicas) and DNI's targets to each sender replica,
  /// and this one's state to each other replica of the stage (nil at its own index).
  let acknowledgeOut: [Socket]
  let peersOut: [Socket?]
  let place: StageRun.ReplicaPlace
  /// What arrives with this stage's input, and what it sends on (nil: last stage).
  let handoff: StageHandoff
  let nextHandoff: Handoff?
  /// Sends the sockets could not take yet, retried by the loop in order.
  var outbox = Outbox<Destination>()
  /// Since when the outbox has waited for a socket (traced as `send-blocked`).
  var blockedSince: Int64?
  /// The straggler experiment's wait, when this stage is the slowed one.
  var straggler: Straggler?
  let statsIntervalMicros: Int64
  /// Markers from the previous stage's replicas, lined up.
  var alignment: MarkerAlignment<Message>
  /// The data plane's sequence numbers: the next one expected (without replicas in the job),
  /// the last one handled.
  var expectedSequence: UInt64 = 0
  var lastSequence: UInt64 = 0
  /// With replicas before this stage: the batches taken since the last marker, by sequence (a
  /// dead replica's batch done again by another is taken once).
  var takenSince: Set<UInt64> = []
  /// A marker held until the next stage's replicas have acknowledged everything before it
  /// (so that what a replica that dies held can be sent again ahead of the marker).
  var gatedMarker: Message?
  var trace: TraceRecorder
  var window = StatsWindow()

  /// Builds the stage and connects its outputs (as CURVE clients when `keys` is given); the
  /// machine's clock starts at `step` (a restored checkpoint's).
  init(_ assignment: Assignment, context: Context, keys: CurveKeyPair?) throws {
    self.assignment = assignment
    let config = try RunConfig.parse(yaml: assignment.config)
    self.config = config
    BLAS.setThreads(config.training.threads)
    let (stage, step) = try Self.build(assignment, config)
    let wiring = assignment.replicas
    place = StageRun.ReplicaPlace(
      index: wiring?.replica ?? 0, count: wiring?.replicas ?? 1,
      averageEvery: wiring?.averageEvery ?? 0)
    alignment = MarkerAlignment(senders: wiring?.senders ?? 1)
    machine = StageRun(
      stage: stage, config: config, batchesPerEpoch: assignment.batchesPerEpoch,
      maxInFlight: assignment.maxInFlight ?? 1, step: step, replica: place,
      clock: WallClock.micros)
    let push = Self.connector(context, keys, highWaterMark: config.daemon.highWaterMark)
    let pushes = { (endpoints: [String]?, keys: [String]?) throws -> [Socket] in
      try (endpoints ?? []).enumerated().map { try push($1, keys?[$0]) }
    }
    downstreams =
      try wiring?.downstreams.map { try pushes($0, wiring?.downstreamKeys) }
      ?? [try push(assignment.downstream, assignment.downstreamKey)]
    router = downstreams.count > 1 ? ReplicaRouter(replicas: downstreams.count) : nil
    acknowledgeOut = try pushes(wiring?.acknowledge, wiring?.acknowledgeKeys)
    let index = place.index
    peersOut = try (wiring?.peers ?? []).enumerated().map { r, endpoint in
      r == index ? nil : try push(endpoint, wiring?.peerServerKeys?[r])
    }
    gradientsOut = try assignment.upstreamGradient.map {
      try push($0, assignment.upstreamGradientKey)
    }
    feedbackOut = try pushes(assignment.feedbackTargets, assignment.feedbackTargetKeys)
    straggler = Straggler(config: config, stage: assignment.stage)
    statsIntervalMicros = Int64(config.daemon.statsMilliseconds) * 1000
    handoff = StageHandoff(assignment, inputShape: stage.inputShape)
    nextHandoff = assignment.nextHandoff
    trace = TraceRecorder(
      pid: ReplicaLayout.tracePid(stage: assignment.stage, replica: place.index))
    trace.originMicros = assignment.originMicros
  }

  /// Connects a PUSH socket to an endpoint, as a CURVE client of the key given when `keys`
  /// is. Sends never wait: a full queue leaves the message in the outbox for the next turn.
  static func connector(_ context: Context, _ keys: CurveKeyPair?, highWaterMark: Int)
    -> (String, String?) throws -> Socket
  {
    { endpoint, key in
      try SocketRecipes.push(
        context, to: endpoint, curve: try Self.curve(keys, endpoint, key),
        highWaterMark: highWaterMark, sendTimeoutMilliseconds: 0)
    }
  }

  /// The stage `assignment` names, restored from its checkpoint if it names one, and the step
  /// that checkpoint was taken at.
  static func build(_ assignment: Assignment, _ config: RunConfig) throws -> (Stage, Int) {
    let stage = try config.buildStage(
      assignment.stage, sampleShape: assignment.sampleShape, classes: assignment.classes)
    guard let checkpoint = assignment.restoreFrom else { return (stage, 0) }
    let metadata = try stage.restore(from: checkpoint, config: config)
    return (stage, metadata["step"].flatMap(Int.init) ?? 0)
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
  /// Whether something may come up the gradient socket now: feedback, peers' states, the
  /// next stage's replicas' ACKs.
  var takesUpstream: Bool {
    machine.takesFeedback || machine.takesPeerStates || router != nil
  }

  /// Whether the data socket is polled now: the machine takes data, nothing waits to be sent,
  /// and nothing held for a marker may go first.
  var takesNewData: Bool { takesData && !alignment.canRelease }

  /// Whether what waited for a marker's copies goes to the machine now.
  var releasesHeld: Bool { takesData && alignment.canRelease }

  /// The machine takes data and nothing waits to be sent.
  private var takesData: Bool { machine.takesData && outbox.isEmpty && gatedMarker == nil }

  /// Whether this replica writes the stage's checkpoints (its replicas' weights are one).
  var writesCheckpoints: Bool {
    place.index == (0..<place.count).first { !machine.droppedPeers.contains($0) }
  }

  func socket(_ destination: Destination) -> Socket {
    switch destination {
    case .downstream(let r): downstreams[r]
    case .acknowledge(let r): acknowledgeOut[r]
    case .peer(let r): peersOut[r]!
    case .upstream: gradientsOut!
    case .feedback(let k): feedbackOut[k]
    }
  }

  var summary: String {
    let outputs = assignment.replicas?.downstreams?.joined(separator: ", ") ?? assignment.downstream
    return "stage \(assignment.stage) of 0…\(assignment.stageCount - 1): "
      + "\(stage.body.layers.map(\.summary).joined(separator: ", ")); \(stage.store.count) "
      + "parameters; output → \(outputs)"
      + (place.count > 1 ? "; replica \(place.index) of \(place.count)" : "")
  }
}
