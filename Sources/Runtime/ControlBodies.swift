import Datasets
import Learning
import Telemetry

/// The JSON bodies of control messages (the header's `kind` says which).

/// HELLO, worker → scheduler: who I am and where my data socket listens.
public struct Hello: Codable, Sendable, Equatable {
  public var protocolVersion: Int
  public var host: String
  public var pid: Int32
  public var dataEndpoint: String
  /// Where gradients for this stage arrive (e2e across processes).
  public var gradEndpoint: String
  /// A stage asked for by flag, environment, Slurm or Kubernetes; nil takes any vacant one.
  public var requestedStage: Int?
  /// CURVE: the worker's public key, which its data and gradient sockets serve with.
  public var publicKey: String?
  /// The OpenBLAS core the worker computes with (its host's CPU may differ from the scheduler's).
  public var blasCore: String?
}

/// ASSIGN, scheduler → worker: everything needed to build and run one stage.
public struct Assignment: Codable, Sendable, Equatable {
  public var job: UInt32
  public var stage: Int
  public var stageCount: Int
  /// The resolved config, as YAML.
  public var config: String
  public var sampleShape: [Int]
  public var classes: Int
  public var batchesPerEpoch: Int
  /// Where this stage's output goes: the next stage's data endpoint, or the scheduler's sink.
  public var downstream: String
  /// Where the stage writes its checkpoint at the end.
  public var runDirectory: String
  /// The job's start on the scheduler's clock (trace times are relative to it).
  public var originMicros: Int64
  /// Image normalisation, for stages that receive the stored images as context, and whether
  /// those travel as floats (f32) rather than bytes (u8).
  public var normalisation: ImageNormalisation
  public var floatImages: Bool
  /// What travels with the activations into this stage, and into the next (nil: this is
  /// the last stage).
  public var handoff: Handoff
  public var nextHandoff: Handoff?
  /// e2e and DNI: the previous stage's gradient endpoint (nil for stage 0 and other methods).
  public var upstreamGradient: String?
  /// Resuming: the checkpoint this stage restores before it trains.
  public var restoreFrom: String?
  /// Batches the scheduler lets into the pipeline at once (how far stage 0 can run ahead).
  public var maxInFlight: Int?
  /// CURVE: the public keys of `downstream` and `upstreamGradient`, and the keys of the
  /// peers allowed to connect to this stage (the previous stage or the scheduler's feed, and
  /// the next stage's gradients).
  public var downstreamKey: String?
  public var upstreamGradientKey: String?
  public var peerKeys: [String]?
  /// DFA, the last stage: every earlier stage's gradient endpoint (where its error goes), and
  /// their CURVE keys.
  public var feedbackTargets: [String]?
  public var feedbackTargetKeys: [String]?
  /// Stage replicas (nil when every stage of the job has one).
  public var replicas: ReplicaWiring?
}

/// Where a worker sits among its stage's replicas, and whom it talks to besides `downstream`.
/// Keys (CURVE) are given index for index with the endpoints.
public struct ReplicaWiring: Codable, Sendable, Equatable {
  public var replica: Int
  public var replicas: Int
  /// Every replica of the next stage's data endpoint (nil: the last stage, which sends to the
  /// sink); a batch goes to one of them, a marker to all.
  public var downstreams: [String]?
  public var downstreamKeys: [String]?
  /// How many send this stage batches and markers (the previous stage's replicas; the feed is
  /// one).
  public var senders: Int
  /// With several replicas here: where each batch taken is acknowledged, by the sender's
  /// replica (the previous stage's gradient endpoints; for stage 0 the scheduler's sink).
  public var acknowledge: [String]?
  public var acknowledgeKeys: [String]?
  /// Every replica of this stage's gradient endpoint, this one's included: where STATE goes.
  public var peers: [String]
  public var peerServerKeys: [String]?
  public var averageEvery: Int
}

/// READY, worker → scheduler: the stage is built and connected.
public struct Ready: Codable, Sendable {
  public var stage: Int
  public var parameterCount: Int
}

/// HEARTBEAT, both ways. A worker's carries its send time; the scheduler's reply echoes it
/// with its own clock, which gives the worker its clock offset.
public struct Heartbeat: Codable, Sendable {
  public var sentMicros: Int64
  public var echoMicros: Int64?
  public var schedulerMicros: Int64?
}

/// STATS, worker → scheduler: live figures, an epoch phase's totals, or what a dead replica
/// of the next stage had handed on.
public struct StatsBody: Codable, Sendable {
  public var live: LiveStats?
  public var totals: PhaseTotals?
  public var credit: ReplicaCredit?
  public init(live: LiveStats?, totals: PhaseTotals?, credit: ReplicaCredit? = nil) {
    (self.live, self.totals, self.credit) = (live, totals, credit)
  }
}

/// What a replica that died had handed on, as one of its senders counted it (its ACKs): the
/// batches and samples per epoch and phase. The scheduler credits the dead replica's stage
/// with it for the phases whose totals the replica never sent.
public struct ReplicaCredit: Codable, Sendable, Equatable {
  public struct Key: Hashable, Sendable {
    public var epoch: Int
    public var isEval: Bool
  }
  public struct Count: Codable, Sendable, Equatable {
    public var batches = 0
    public var samples = 0
    public init() {}
    mutating func add(samples n: Int) { (batches, samples) = (batches + 1, samples + n) }
  }
  public struct Entry: Codable, Sendable, Equatable {
    public var epoch: Int
    public var isEval: Bool
    public var count: Count
  }
  /// The dead replica: its stage and replica index.
  public var stage: Int
  public var replica: Int
  public var entries: [Entry]
}

/// DROP, scheduler → worker: replica `replica` of stage `stage` died; the job goes on without
/// it (senders send what it held to another replica, receivers stop waiting for its markers,
/// peers leave it out of their sums).
public struct DropBody: Codable, Sendable, Equatable {
  public var stage: Int
  public var replica: Int
  public var reason: String
}

/// STOP, scheduler → worker: save the stage and leave.
public struct StopBody: Codable, Sendable {
  public var reason: String
}

/// BYE, worker → scheduler: the last word.
public struct Bye: Codable, Sendable {
  public var stage: Int
  public var checkpoint: String?
  public var rejected: [String: Int]
  public var traceDropped: Int
  /// Why the worker leaves: `stop` when told to, else what happened.
  public var reason: String
  /// The replay buffer's staleness figures (the replay schedule).
  public var replay: ReplayStatistics?
  /// The worker's peak resident memory, and the bytes it sent downstream and upstream.
  public var peakResidentBytes: Int?
  public var bytesSent: Int?
  /// Of those, the bytes sent upstream (e2e's and DNI's gradients, DFA's errors).
  public var bytesSentUpstream: Int?
  /// Why the last save (`checkpoint` nil) failed, when it did.
  public var saveError: String?
}

/// TRACE, worker → scheduler: a chunk of the worker's trace events.
public struct TraceChunk: Codable, Sendable {
  public var stage: Int
  public var events: [TraceEvent]
}

/// ERROR, either way: what went wrong, for a person to read.
public struct ErrorBody: Codable, Sendable {
  public var message: String
}
