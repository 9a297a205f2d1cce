import Wire

/// A worker's life on the control plane, without I/O: HELLO, ASSIGN, READY, START, training,
/// and leaving — or a RESET (another stage failed), which drops the stage and starts over with
/// HELLO. The worker's loop turns what it receives and how time passes into events and does
/// the actions; tested without sockets, like the scheduler's Registry.
///
///     registering ──ASSIGN──▶ building ──built──▶ assigned ──START──▶ training ──STOP/signal──▶
/// leaving
///          ▲                                         │                    │
///          └───────────────── RESET ─────────────────┴────────────────────┘
///
/// Waiting ends in failure after `assignWait` (for ASSIGN) or `startWait` (for START) without a
/// word from the scheduler (each scheduler heartbeat restarts the wait); training ends in
/// failure after liveness × heartbeat of silence. ERROR, and STOP or a signal before training
/// began, are failures too: the process exits non-zero. A replica among several that gets a
/// signal while training does not leave at once: it asks the scheduler to LEAVE and trains on
/// until the STOP that comes at the next cut (or leaves anyway after `departWait`).
public struct WorkerLife: Sendable {
  public enum State: Equatable, Sendable {
    /// HELLO sent; waiting for ASSIGN.
    case registering
    /// ASSIGN received; the stage is being built (its checkpoint restored).
    case building(job: UInt32)
    /// READY sent; waiting for START.
    case assigned(job: UInt32)
    case training(job: UInt32)
    /// STOP or a signal during training: save, ship the trace, say BYE, exit 0.
    case leaving(reason: String)
    /// Exit non-zero with this sentence.
    case failed(reason: String)
  }

  public enum Event: Sendable {
    /// The sockets are bound and connected.
    case started(nowMicros: Int64)
    case assign(Assignment)
    /// The assigned stage is built: the assignment's heartbeat period and liveness apply now.
    case built(heartbeatMicros: Int64, liveness: Int64)
    case start
    case reset(reason: String)
    case stop(reason: String)
    case error(message: String)
    /// A scheduler heartbeat; `echo`: it answers one of ours.
    case heartbeat(echo: Bool)
    /// A well-formed control message this worker never takes (READY, HELLO, …).
    case other(Kind)
    /// DROP: a replica of the job died; the job goes on without it.
    case drop(DropBody)
    case signal(Int32)
    /// This worker sent something on the control plane (any message counts as a heartbeat).
    case sent(nowMicros: Int64)
    /// Time passes. Messages count as heard at the last tick's time.
    case tick(nowMicros: Int64)
  }

  public enum Action: Equatable, Sendable {
    case sendHello
    /// Build the stage, restore its checkpoint and connect its sockets; then report `built`.
    case setUp(Assignment)
    case sendReady
    case sendHeartbeat
    /// Ask to leave at the next cut (a replica among several, sent a signal).
    case sendLeave
    /// Forget the stage of this job (its messages still in flight are stale from now on).
    case dropStage(job: UInt32, reason: String)
    /// Go on without a dead replica (`Worker+Drop`).
    case dropReplica(DropBody)
    case countRejection(String)
  }

  public private(set) var state: State = .registering
  /// The scheduler's address (for the sentences), and how long to wait for ASSIGN and for
  /// START without hearing from it.
  public let scheduler: String
  public let assignWait: Duration
  public let startWait: Duration
  public private(set) var heartbeatMicros: Int64 = 1_000_000
  public private(set) var liveness: Int64 = 5
  private var lastHeardMicros: Int64 = 0
  private var lastSentMicros: Int64 = 0
  private var nowMicros: Int64 = 0
  /// The stage has other replicas (from its ASSIGN): a signal asks to leave at a cut.
  private var replicated = false
  /// When this replica asked to leave, if it has.
  public private(set) var departingSinceMicros: Int64?
  /// How long a replica that asked to leave waits for its STOP before leaving anyway.
  public static let departWait: Duration = .seconds(30)

  public init(scheduler: String, assignWait: Duration, startWait: Duration = .seconds(600)) {
    (self.scheduler, self.assignWait, self.startWait) = (scheduler, assignWait, startWait)
  }

  /// Why the worker failed, once it has.
  public var failure: String? {
    if case .failed(let reason) = state { reason } else { nil }
  }

  /// Whether the loop is done: leaving (to say BYE) or failed.
  public var isOver: Bool {
    switch state {
    case .leaving, .failed: true
    default: false
    }
  }

  public mutating func on(_ event: Event) -> [Action] {
    if isOver { return [] }  // leaving is draining: nothing changes its course
    if event.isFromScheduler { lastHeardMicros = nowMicros }
    switch event {
    case .started(let now):
      (nowMicros, lastHeardMicros) = (now, now)
      return [.sendHello]
    case .sent(let now):
      lastSentMicros = now
      return []
    case .tick(let now):
      nowMicros = now
      return checkTime()
    case .signal(let signal):
      return depart(signal)
    case .stop, .error:
      end(event)
      return []
    default:
      return progress(event)
    }
  }

  /// HELLO → ASSIGN → built → READY → START, a RESET back to HELLO, heartbeats while waiting.
  private mutating func progress(_ event: Event) -> [Action] {
    switch (event, state) {
    case (.assign(let assignment), .registering):
      state = .building(job: assignment.job)
      replicated = (assignment.replicas?.replicas ?? 1) > 1
      return [.setUp(assignment)]
    case (.built(let heartbeat, let liveness), .building(let job)):
      (heartbeatMicros, self.liveness) = (heartbeat, liveness)
      state = .assigned(job: job)
      return [.sendReady]
    case (.start, .assigned(let job)):
      state = .training(job: job)
      return []
    case (.reset, .registering):  // another failure while waiting: still waiting, say so
      return [.sendHello]
    case (.reset(let reason), .building(let job)), (.reset(let reason), .assigned(let job)),
      (.reset(let reason), .training(let job)):
      state = .registering
      departingSinceMicros = nil
      return [.dropStage(job: job, reason: reason), .sendHello]
    case (.heartbeat, .training):
      return []
    case (.drop(let body), .training):
      return [.dropReplica(body)]
    case (.heartbeat(let echo), _):  // answered, so that the scheduler knows we wait, not died
      return echo ? [] : [.sendHeartbeat]
    case (.assign, _): return unexpected(.assign)
    case (.start, _): return unexpected(.start)
    case (.other(let kind), _): return unexpected(kind)
    default: return []  // a stage built after a RESET dropped it: nothing to report
    }
  }

  /// A signal: a replica among several asks to leave at the next cut (once: the signal stays
  /// raised) and trains on; anything else ends now.
  private mutating func depart(_ signal: Int32) -> [Action] {
    guard case .training = state, replicated else {
      end(.signal(signal))
      return []
    }
    guard departingSinceMicros == nil else { return [] }
    departingSinceMicros = nowMicros
    return [.sendLeave]
  }

  /// STOP, ERROR or a signal: leaving while training, a failure before.
  private mutating func end(_ event: Event) {
    switch (event, state) {
    case (.stop(let reason), .training):
      state = .leaving(reason: reason)
    case (.stop(let reason), _):
      state = .failed(
        reason:
          "the scheduler stopped the job while this worker waited for \(waitingFor): \(reason)")
    case (.error(let message), .training):
      state = .failed(reason: "the scheduler ended the job: \(message)")
    case (.error(let message), _):
      state = .failed(reason: "the scheduler refused this worker: \(message)")
    case (.signal(let signal), .training):
      state = .leaving(reason: "signal \(signal)")
    case (.signal, _):
      state = .failed(reason: "interrupted while waiting for \(waitingFor)")
    default: break
    }
  }

  // MARK: - Time

  private func unexpected(_ kind: Kind) -> [Action] {
    [.countRejection("unexpected-\(kind)")]
  }

  private var waitingFor: String {
    switch state {
    case .registering: "a stage assignment"
    case .building, .assigned: "START"
    default: "the scheduler"
    }
  }

  private mutating func checkTime() -> [Action] {
    let silent = nowMicros - lastHeardMicros
    switch state {
    case .registering, .building, .assigned:
      let wait = state == .registering ? assignWait : startWait
      if silent > wait.micros {
        state = .failed(
          reason:
            "no answer from \(scheduler) within \(wait) while waiting for \(waitingFor): is the "
            + "scheduler running and reachable? (With CURVE on either side, both need it: "
            + "security.curve there, --key and --scheduler-key here, and this worker's public "
            + "key on its allow-list.)"
        )
      }
      return []
    case .training:
      if let since = departingSinceMicros, nowMicros - since > Self.departWait.micros {
        state = .leaving(
          reason: "asked to leave; no STOP from the scheduler within \(Self.departWait)")
        return []
      }
      if silent > liveness * heartbeatMicros {
        state = .failed(
          reason:
            "lost the scheduler: nothing heard for \(silent / 1000) ms (liveness \(liveness) × "
            + "\(heartbeatMicros / 1000) ms)"
        )
        return []
      }
      return nowMicros - lastSentMicros >= heartbeatMicros ? [.sendHeartbeat] : []
    case .leaving, .failed:
      return []
    }
  }
}

extension WorkerLife.Event {
  /// A message from the scheduler (any word from it says it lives).
  var isFromScheduler: Bool {
    switch self {
    case .assign, .start, .reset, .stop, .error, .heartbeat, .other, .drop: true
    case .started, .built, .signal, .sent, .tick: false
    }
  }
}

extension Duration {
  /// Whole microseconds.
  var micros: Int64 { components.seconds * 1_000_000 + components.attoseconds / 1_000_000_000_000 }
}
