/// Every protocol constant in one place (after zguide's mdp.h).
public enum Protocol {
  /// "SWG1", little-endian, at the start of every header frame.
  public static let magic: UInt32 = 0x3147_5753
  /// Bumped on any incompatible change; a peer speaking another version is refused. 2: ASSIGN
  /// carries the handoffs, RESULT no payload. 3: FEEDBACK (DFA's error), ASSIGN's feedback
  /// targets, GRAD also under DNI. 4: ASSIGN's per-channel normalisation and float images,
  /// the reduced wire formats (f16, bf16, i8 activations). 5: the sender's replica in the
  /// header, ACK and STATE (stage replicas). 6: LEAVE (a replica leaves at the next cut).
  /// 7: DROP (a dead replica is left out while the job goes on).
  public static let version: UInt16 = 7
  /// Fixed header bytes before the tensor descriptors.
  public static let headerSize = 44
  /// Bytes per tensor descriptor: role, dtype, rank, pad, then 4 × u32 dims.
  public static let descriptorSize = 20
  public static let maxRank = 4
  public static let maxTensors = 8
  /// The most micro-batches one batch may be split into (GPipe's M).
  public static let maxMicroBatches = 1024
  /// The most elements one tensor may declare (256 Mi floats = 1 GiB).
  public static let maxElements = 1 << 28
  /// ZMQ_MAXMSGSIZE on every data socket: what a peer can make us allocate per frame.
  public static let maxFrameBytes: Int64 = 1 << 30
  /// ZMQ_MAXMSGSIZE on control sockets (JSON bodies, trace chunks).
  public static let maxControlFrameBytes: Int64 = 64 << 20
}

/// What a message is for. Data kinds ride PUSH/PULL; control kinds ride ROUTER/DEALER.
public enum Kind: UInt8, Sendable, CaseIterable, CustomStringConvertible {
  // data plane
  case train = 1
  case eval = 2
  case marker = 3
  case result = 4
  case grad = 5
  case feedback = 6
  /// A replica took the batch with this header's sequence (back to the one that sent it).
  case ack = 7
  /// A replica's weights and optimizer state, to the stage's other replicas.
  case state = 8
  // control plane
  case hello = 16
  case assign = 17
  case ready = 18
  case start = 19
  case heartbeat = 20
  case stats = 21
  case reset = 22
  case error = 23
  case stop = 24
  case bye = 25
  case trace = 26
  /// A replica asks to leave the job at the next cut (it was sent SIGTERM).
  case leave = 27
  /// A replica died: the job goes on without it (to every other worker).
  case drop = 28

  public var description: String {
    switch self {
    case .train: "TRAIN"
    case .eval: "EVAL"
    case .marker: "MARKER"
    case .result: "RESULT"
    case .grad: "GRAD"
    case .feedback: "FEEDBACK"
    case .ack: "ACK"
    case .state: "STATE"
    case .hello: "HELLO"
    case .assign: "ASSIGN"
    case .ready: "READY"
    case .start: "START"
    case .heartbeat: "HEARTBEAT"
    case .stats: "STATS"
    case .reset: "RESET"
    case .error: "ERROR"
    case .stop: "STOP"
    case .bye: "BYE"
    case .trace: "TRACE"
    case .leave: "LEAVE"
    case .drop: "DROP"
    }
  }
}

/// What a tensor in a message carries.
public enum Role: UInt8, Sendable, CaseIterable {
  /// activations: f32, B × the stage's input shape; labels: i32, B; context: u8, the batch's
  /// raw images (ContSup E); belief: f32, B × classes (SID); gradient: f32, ∂L/∂h (GRAD).
  case activations = 1
  case labels = 2
  case context = 3
  case belief = 4
  case gradient = 5
  /// f32, [1]: a micro-batch's share of its batch (GPipe's TRAIN), which scales its loss.
  case share = 6
  /// A control message's JSON body.
  case body = 7
  /// The previous stage's input (ContSup's R1 context).
  case skip = 8
  /// f32, B × classes: DFA's output error (softmax − onehot(y)) / B, last stage → every
  /// earlier stage (FEEDBACK).
  case error = 9
  /// f32, [n]: a replica's parameters, then its optimizer's state, flat (STATE).
  case state = 10
}

/// Element types on the wire. f16, bf16 and i8 carry activations under a reduced
/// `daemon.wireFormat` (NN's `ValueFormat`): i8 is one f32 scale per row (the first
/// dimension) followed by one signed byte per value.
public enum DType: UInt8, Sendable, CaseIterable {
  case f32 = 1
  case i32 = 2
  case u8 = 3
  case f16 = 4
  case bf16 = 5
  case i8 = 6

  /// The bytes of a tensor of `shape` (`elements` values).
  public func byteCount(shape: [Int], elements: Int) -> Int {
    switch self {
    case .f32, .i32: 4 * elements
    case .u8: elements
    case .f16, .bf16: 2 * elements
    case .i8: elements + 4 * (shape.first ?? 1)
    }
  }
}

/// What a header's `flags` mean, by kind: on TRAIN, the one stage that trains under the
/// `sequential` schedule, plus one (0: every stage trains; the others only pass data on); on
/// MARKER, a `MarkerFlag`; on every other kind, nothing (0).
public enum TrainFlags {
  public static func flags(activeStage: Int?) -> UInt8 { activeStage.map { UInt8($0 + 1) } ?? 0 }
  public static func activeStage(_ flags: UInt8) -> Int? { flags > 0 ? Int(flags) - 1 : nil }
}

/// Marker meanings (the `flags` of a MARKER message).
public enum MarkerFlag: UInt8, Sendable, CaseIterable {
  /// The epoch's training batches are all in front of this marker.
  case trainEnd = 1
  /// The epoch's evaluation batches are all in front of this marker.
  case evalEnd = 2
  /// Mid-epoch: save a checkpoint (the header's `step` says how many of the epoch's training
  /// batches are in front of it).
  case checkpoint = 3
}
