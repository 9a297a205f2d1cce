import Learning
import Wire
import ZMQ

/// The scheduler's sockets and their security: the control ROUTER workers register on, the
/// sink the last stage sends results to, the feed into stage 0 (one socket per replica of it),
/// and CURVE with the ZAP
/// handler that checks every peer's key. I/O only; the decisions are `SchedulerMachine`'s.
final class SchedulerSockets {
  let context: Context
  let control: Socket
  let sink: Socket
  /// Into each replica of stage 0 (empty while no job runs).
  private(set) var feeds: [Socket] = []
  private(set) var controlEndpoint = ""
  private(set) var sinkEndpoint = ""
  /// CURVE: the scheduler's keys, and the handler that checks every peer's key.
  let curveKeys: CurveKeyPair?
  private var zap: ZAPHandler?
  /// Keys allowed besides `security.allowedWorkerKeys` (the launcher's own workers).
  private var extraWorkerKeys: Set<String> = []
  private let configuredKeys: [String]
  /// Bind a non-loopback address without CURVE (`--insecure`).
  var allowInsecure = false

  init(config: RunConfig) throws {
    context = try Context()
    control = try Socket(context, .router)
    try control.setMaximumMessageSize(Protocol.maxControlFrameBytes)
    sink = try Socket(context, .pull)
    try sink.setMaximumMessageSize(Protocol.maxFrameBytes)
    configuredKeys = config.security.allowedWorkerKeys
    do {
      curveKeys = config.security.curve ? try KeyFile.keyPair(config.security.schedulerKey) : nil
    } catch {
      throw RuntimeError("security.schedulerKey: \(error)")
    }
  }

  deinit { zap?.stop() }

  var allowedWorkerKeys: Set<String> { Set(configuredKeys).union(extraWorkerKeys) }
  var refusedKeys: Int { zap?.refusedCount ?? 0 }

  func allowWorkers(_ keys: [String]) {
    extraWorkerKeys.formUnion(keys)
    zap?.allow(allowedWorkerKeys)
  }

  /// Binds the control and sink endpoints on `daemon.bind`.
  func bind(_ daemon: DaemonConfig, log: @escaping @Sendable (String) -> Void) throws {
    let host = daemon.bind
    if let keys = curveKeys {
      zap = try SocketRecipes.secureServers(
        [control, sink], keys: keys, context: context, allowed: allowedWorkerKeys,
        who: "on security.allowedWorkerKeys", log: log)
    }
    try checkExposure(
      bind: host, secured: curveKeys != nil, insecure: allowInsecure,
      fix: "set security.curve with a key from `stagewise keygen`")
    let port = daemon.controlPort == 0 ? "*" : String(daemon.controlPort)
    try control.bind("tcp://\(host):\(port)")
    controlEndpoint = control.lastEndpoint
    let hwm = Int32(daemon.highWaterMark)
    try sink.setHighWaterMarks(send: hwm, receive: hwm)
    try sink.bind("tcp://\(host):*")
    // the last stage connects here (and stage 0's replicas, for their ACKs)
    sinkEndpoint = "tcp://\(advertisedHost(bind: host)):\(sink.boundPort)"
  }

  /// The feed to stage 0's replicas; its sends never wait (a full queue means: try again next
  /// turn).
  func connectFeed(to replicas: [Hello], highWaterMark: Int) throws {
    feeds = try replicas.map { hello in
      try SocketRecipes.push(
        context, to: hello.dataEndpoint, curve: curveKeys.map { ($0, hello.publicKey ?? "") },
        highWaterMark: highWaterMark, sendTimeoutMilliseconds: 0)
    }
  }

  func disconnectFeed() { feeds = [] }
}
