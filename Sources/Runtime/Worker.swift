import Foundation
import Learning
import Linalg
import Telemetry
import Wire
import ZMQ

/// A stage worker: the process around one stage. Its life on the control plane is the pure
/// state machine `WorkerLife`, its training the pure `StageMachine` (the trainer's); this
/// class is the one loop that feeds both their events — control messages, batches,
/// gradients and feedback, time, signals — and does their actions on ZeroMQ sockets and
/// files (Worker+DataPlane).
public final class Worker {
  public struct Options: Sendable {
    public var scheduler: String
    public var requestedStage: Int?
    /// The interface the data socket binds; `advertise` is the host others reach it by.
    public var bindHost = "127.0.0.1"
    public var advertiseHost: String?
    /// How long to wait for the scheduler to assign a stage.
    public var registrationTimeout: Duration = .seconds(120)
    public var protocolVersion = Int(Protocol.version)
    /// CURVE: this worker's keys and the scheduler's public key (both, or neither).
    public var curve: CurveKeyPair?
    public var schedulerKey: String?
    /// Bind a non-loopback address without CURVE (`--insecure`).
    public var insecure = false
    public init(scheduler: String, requestedStage: Int? = nil) {
      self.scheduler = scheduler
      self.requestedStage = requestedStage
    }
  }

  let options: Options
  let log: @Sendable (String) -> Void
  let context: Context
  let control: Socket
  let dataIn: Socket
  /// Upstream-flowing messages arrive here: e2e's and DNI's gradients from the next stage,
  /// DFA's errors from the last; ours go to the previous stage.
  let gradIn: Socket
  var dataEndpoint = ""
  var gradEndpoint = ""
  /// CURVE: checks who connects to our data and gradient sockets (our neighbours only).
  var zap: ZAPHandler?

  var life: WorkerLife
  /// The stage this worker holds, from ASSIGN until a RESET or the end.
  var session: StageSession?

  // What the process keeps across assignments, on purpose: its counts for run.json and the
  // jobs it was reset out of (their messages still in flight are stale, not errors).
  var rejections: Rejections
  var jobs = JobFilter()
  /// Data-plane bytes this process sent (activations and gradients).
  var bytesSent = 0
  var bytesSentUpstream = 0
  var clock: ClockSync
  /// Mid-epoch checkpoints this process wrote, oldest first (pruned across assignments: the
  /// run directory is the same).
  var stepCheckpoints: [String] = []
  /// The data socket's high-water marks are set once, before any peer connects.
  var dataInConfigured = false

  public init(_ options: Options, log: @escaping @Sendable (String) -> Void) throws {
    self.options = options
    self.log = log
    context = try Context()
    control = try Socket(context, .dealer)
    try control.setMaximumMessageSize(Protocol.maxControlFrameBytes)
    dataIn = try Socket(context, .pull)
    gradIn = try Socket(context, .pull)
    life = WorkerLife(scheduler: options.scheduler, assignWait: options.registrationTimeout)
    rejections = Rejections(log: log)
    clock = ClockSync(sameClock: isLocalEndpoint(options.scheduler))
  }

  deinit { zap?.stop() }

  // MARK: - The loop

  /// Runs the worker to the end; returns normally after a STOP, throws on a fatal problem.
  public func run() throws {
    try bindSockets()
    try handle(.started(nowMicros: WallClock.micros()))
    log(
      "registering with \(options.scheduler) (data endpoint \(dataEndpoint), OpenBLAS core "
        + "\(BLAS.coreName))"
    )
    while !life.isOver {
      if let signal = Signals.stopRequested { try handle(.signal(signal)) }
      try turn()
    }
    switch life.state {
    case .leaving(let reason):
      guard let session else { throw RuntimeError("leaving (\(reason)) without a stage") }
      _ = session.machine.on(.stop)
      try finish(session, reason: reason)
    case .failed(let reason): throw RuntimeError(reason)
    default: break
    }
  }

  /// One turn of the worker's one loop: wait, bounded, for whatever can be taken now — control
  /// always; while training, what comes back to the stage, its next input (once nothing waits
  /// to be sent) and the socket the outbox waits for — then take it. Nothing else waits
  /// anywhere: a send that would block stays in the outbox for the next turn.
  func turn() throws {
    try handle(.tick(nowMicros: WallClock.micros()))
    let s = trainingSession
    var items: [(Socket, Socket.Readiness)] = [(control, .readable)]
    if let s {
      if let head = s.outbox.head { items.append((s.socket(head), .writable)) }
      if s.takesUpstream { items.append((gradIn, .readable)) }
      if s.takesNewData { items.append((dataIn, .readable)) }
    }
    let held = s?.releasesHeld ?? false
    let replays = s.map { $0.machine.canReplay && $0.outbox.isEmpty } ?? false
    let locked = s?.machine.isLocked ?? false
    let waitStart = WallClock.micros()
    let busy = replays || held
    let polled = try Socket.poll(items, timeoutMilliseconds: busy ? 0 : s == nil ? 100 : 50)
    let ready = { (socket: Socket) in polled.contains { items[$0].0 === socket } }
    if ready(control) { try serviceControl() }
    // A RESET or STOP just now ends what the stage was doing: what it polled is not taken.
    guard let s, s === trainingSession else { return }
    if let head = s.outbox.head, ready(s.socket(head)) { try flush(s) }
    let waited = { (name: String) in
      s.trace.record(name, startMicros: waitStart, endMicros: WallClock.micros())
    }
    if ready(gradIn) {
      waited(locked ? "gradient-wait" : "receive-wait")
      try takeFeedback(s)
    } else if held {
      try takeHeld(s)
    } else if ready(dataIn) {
      waited("receive-wait")
      try takeData(s)
    } else if replays {
      try drive(s, .idle)
    }
    let now = WallClock.micros()
    try drive(s, .tick(nowMicros: now))
    if now - s.window.startMicros >= s.statsIntervalMicros { try sendLiveStats(s, now) }
  }

  /// The session, while the worker trains.
  var trainingSession: StageSession? {
    if case .training = life.state { session } else { nil }
  }

  // MARK: - Events and actions

  /// Every control message waiting, as events of the worker's life.
  func serviceControl() throws {
    while let frames = try control.tryReceive() {
      guard let message = rejections.accept(frames, on: "control") else { continue }
      try handle(.tick(nowMicros: WallClock.micros()))
      try handle(event(for: message))
    }
  }

  func event(for message: Message) -> WorkerLife.Event {
    switch message.kind {
    case .assign:
      do throws(WireError) { return .assign(try message.body(Assignment.self)) } catch {
        return .error(message: "\(error)")
      }
    case .start: return .start
    case .drop:
      guard let body = try? message.body(DropBody.self), message.job == session?.assignment.job
      else { return .other(.drop) }  // unreadable, or about a job this worker left
      return .drop(body)
    case .reset: return .reset(reason: (try? message.body(StopBody.self).reason) ?? "reset")
    case .stop: return .stop(reason: (try? message.body(StopBody.self).reason) ?? "stop")
    case .error: return .error(message: (try? message.body(ErrorBody.self).message) ?? "")
    case .heartbeat:
      guard let beat = try? message.body(Heartbeat.self) else { return .heartbeat(echo: false) }
      if let echo = beat.echoMicros, let theirs = beat.schedulerMicros {
        clock.observe(sentMicros: echo, schedulerMicros: theirs, receivedMicros: WallClock.micros())
        session?.trace.offsetMicros = clock.offsetMicros
      }
      return .heartbeat(echo: beat.echoMicros != nil)
    default: return .other(message.kind)
    }
  }

  /// One event of the worker's life and its actions; entering training starts the stage.
  func handle(_ event: WorkerLife.Event) throws {
    let wasTraining = trainingSession != nil
    for action in life.on(event) { try perform(action) }
    if !wasTraining, let s = trainingSession { try drive(s, .start) }
  }

  func perform(_ action: WorkerLife.Action) throws {
    switch action {
    case .sendHello: try sayHello()
    case .setUp(let assignment): try setUp(assignment)
    case .sendReady:
      guard let session else { return }
      try sendControl(
        Message(
          kind: .ready,
          body: Ready(stage: session.assignment.stage, parameterCount: session.stage.store.count)))
    case .sendHeartbeat:
      try sendControl(Message(kind: .heartbeat, body: Heartbeat(sentMicros: WallClock.micros())))
    case .sendLeave:
      log("asked to leave: training on until the scheduler's STOP at the next cut")
      try sendControl(Message(kind: .leave))
    case .dropStage(let job, let reason):
      if let session {
        log(
          "reset (\(reason)): dropping stage \(session.assignment.stage) and waiting for a new "
            + "assignment"
        )
        _ = session.machine.on(.reset)  // and with it whatever waited in its outbox
      }
      zap?.hold()  // new neighbours wait for the next assignment's allow-list
      jobs.retire(job)
      session = nil
    case .dropReplica(let body):
      if let session { try goOnWithout(body, session) }
    case .countRejection(let reason):
      rejections.add(reason, "a control message (\(reason)) in state \(life.state)")
    }
  }

  /// Sends on the control plane (every message counts as a heartbeat).
  func sendControl(_ message: Message) throws {
    var message = message
    message.job = session?.assignment.job ?? 0
    try control.send(message.encode())
    _ = life.on(.sent(nowMicros: WallClock.micros()))
  }

  func sendLiveStats(_ s: StageSession, _ now: Int64) throws {
    let live = s.window.report(
      stage: s.assignment.stage, step: s.machine.step, lastSequence: s.lastSequence,
      rejected: rejections.counts, nowMicros: now)
    try sendControl(Message(kind: .stats, body: StatsBody(live: live, totals: nil)))
    s.window = StatsWindow(startMicros: now)
  }
}
