import NN

/// DNI's synthesisers (`dni:` in the config, for methods dni and cdni).
public struct DNIConfig: Sendable, Equatable, Codable {
  public enum Kind: String, Sendable, Codable, CaseIterable {
    /// One affine map from h (and the label) to ĝ; on maps a 3×3 convolution.
    case linear
    /// Affine → ReLU → affine with `hidden` units (on maps: 3×3 convolutions, `hidden` channels).
    case mlp
  }
  /// Linear by default: on model A at K = 4 it learns as well as the MLP (85.92 % against
  /// 85.87 % after 5 epochs) at two thirds of the time.
  public var synthesiser: Kind = .linear
  public var hidden: Int = 1024
  /// The synthesiser's own optimizer, at a constant rate and without weight decay (SGD takes
  /// the run's momentum). Adam by default: a synthesiser's inputs are badly conditioned for
  /// SGD (most directions of h/√n have curvature ~1/n), and under the run's SGD and weight
  /// decay its predictions stayed at 0.2–0.4 × its targets' norm.
  public var optimizer: OptimizerKind = .adam
  /// 0 freezes the synthesiser at zero: hidden stages then never move (a control).
  public var learningRate: Float = 1e-4
  /// Hidden stages also train a head of their own on CE (DGL's local loss) and add its
  /// gradient to the synthetic one: the auxiliary loss Jaderberg et al. mention to stabilise.
  public var auxiliaryLoss = false
  public init() {}
}

/// SID's settings (`sid:` in the config).
public struct SIDConfig: Sendable, Equatable, Codable {
  /// Weight of the label term; 1 − α weighs the distillation from the previous belief.
  public var alpha: Float = 0.5
  /// Label smoothing ε of the CE term.
  public var labelSmoothing: Float = 0
  /// `forward`: KL(previous ‖ own), the authors' code; `reverse`: the paper's text.
  public var direction: KLDirection = .forward
  /// The head reads [features ; previous belief].
  public var beliefInput = false
  public init() {}
}

/// Which context ContSup supplies to each stage after the first (the paper's names).
// swift-format-ignore: AlwaysUseLowerCamelCase
public enum ContextMode: String, Sendable, Codable, CaseIterable {
  /// The raw input image.
  case E
  /// The previous stage's (context-augmented) input: a skip over one stage.
  case R1
  /// Both, summed.
  case R1E
}

public struct ContSupConfig: Sendable, Equatable, Codable {
  public var mode: ContextMode = .E
  /// The context encoders learn at this fraction of the stage's learning rate. A step on an
  /// encoder of the raw image moves the stage's input in proportion to the image's squared
  /// norm (784 pixels): at the full rate SGD 0.05 diverges on Fashion-MNIST.
  public var encoderLearningRateScale: Float = 0.1
  public init() {}
}

/// How stages step relative to each other.
public enum Schedule: String, Sendable, Codable, CaseIterable {
  /// Batch t+1 enters stage 0 only after batch t has left the last stage, and each stage
  /// hands a batch on only after its own update: one stage computes at a time, the order of
  /// the one-process trainer. The update-locked control.
  case lockstep
  /// Stage k works on batch t while stage k+1 works on batch t−1; batches in flight are
  /// bounded by `daemon.maxInFlight`. In one process it runs in lockstep order, which for
  /// local methods gives the same numbers: each stage sees the same inputs in the same order.
  case pipelined
  /// DGL's asynchronous mode: like pipelined, and a stage after the first keeps its last
  /// `replay.buffer` inputs; while no fresh input waits it trains on a buffer draw (least
  /// used, then newest) instead of idling. In one process there is never idle time, so
  /// `stagewise train` runs it in lockstep order.
  case replay
  /// Modular training: stage 0 trains for all its epochs, then is frozen while stage 1
  /// trains on its outputs, and so on.
  case sequential
}

/// DGL's replay buffer (`replay:` in the config, for the `replay` schedule).
public struct ReplayConfig: Sendable, Equatable, Codable {
  /// Batches kept at each stage boundary.
  public var buffer: Int = 4
  /// Uses after which an entry is not drawn again; 0 for no cap.
  public var maxReuse: Int = 0
  public init() {}
}

/// How the daemon's processes talk: endpoints, flow control, liveness.
public struct DaemonConfig: Sendable, Equatable, Codable {
  /// Batches fed but not yet out of the last stage; 0 picks 2 × stages. Lockstep uses 1.
  public var maxInFlight: Int = 0
  /// ZeroMQ send and receive high-water marks of every data socket, in messages.
  public var highWaterMark: Int = 2
  /// How often each side says it is alive, and how many silent intervals mean dead.
  public var heartbeatMilliseconds: Int = 1000
  public var liveness: Int = 5
  /// The interface the scheduler binds (control and sink); workers bind their own.
  public var bind: String = "127.0.0.1"
  /// The scheduler's control port; 0 lets the system pick a free one.
  public var controlPort: Int = 0
  /// How often workers send live statistics.
  public var statsMilliseconds: Int = 500
  /// How often `stagewise launch` restarts a job whose worker died (from the newest epoch
  /// checkpoint, with fresh workers) before it gives up.
  public var restarts: Int = 3
  /// Also checkpoint every this many training batches within an epoch (0: at epoch ends
  /// only): a failure then costs at most this many batches instead of up to an epoch.
  public var checkpointEverySteps: Int = 0
  /// e2e across processes: micro-batches per batch (GPipe); 1 is naive model parallelism.
  public var microBatches: Int = 1
  /// Benchmarks: slow stage `slowStage` down by `slowdown` (its compute takes that many times
  /// as long: the worker waits out the difference after each step). 1 is no slowdown.
  public var slowStage: Int = 0
  /// How activations (and ContSup's augmented input) travel between stages: `f32`, `f16`,
  /// `bf16` or `int8` (one scale per sample). Gradients, errors, beliefs and labels stay as
  /// they are; the trainer reads what the wire keeps, so `train` and `launch` still agree.
  public var wireFormat: ValueFormat = .f32
  public var slowdown: Double = 1
  public init() {}
}

/// Who may join a job: ZeroMQ CURVE on every control and data socket. Not part of the
/// config hash (a new key on the allow-list does not orphan the run's checkpoints).
public struct SecurityConfig: Sendable, Equatable, Codable {
  /// Encrypt and authenticate every connection; workers need `--key` and `--scheduler-key`.
  public var curve = false
  /// The scheduler's key file (`stagewise keygen --out scheduler` writes scheduler.key); read
  /// by the scheduler only — the secret never travels.
  public var schedulerKey: String = ""
  /// The public keys (Z85, 40 characters) of the workers allowed to join; others are refused.
  public var allowedWorkerKeys: [String] = []
  public init() {}
}

/// Where the data comes from.
public enum DataSource: String, Sendable, Codable, CaseIterable {
  case fashionMNIST = "fashion-mnist"
  /// A small generated set (see `SyntheticDataset`), for tests and smoke runs.
  case synthetic
  /// A NumPy archive with x_train, y_train, x_test, y_test (see `NPZDataset`).
  case npz
}

public struct DataConfig: Sendable, Equatable, Codable {
  public var source: DataSource = .fashionMNIST
  public var path: String = "/usr/share/datasets/fashion-mnist"
  /// Use only the first N training (test) samples; nil for all.
  public var trainLimit: Int? = nil
  public var testLimit: Int? = nil
  /// Synthetic set: samples for training and for test, and the image side.
  public var syntheticTrain: Int = 2000
  public var syntheticTest: Int = 500
  public var syntheticSide: Int = 8
  /// Training images moved by a seeded random crop and flip (none by default).
  public var augment = AugmentConfig()
  /// npz: the number of classes (nil: one more than the largest label).
  public var classes: Int? = nil
  /// Image normalisation, one value or one per channel (nil: Fashion-MNIST's own for
  /// fashion-mnist, measured on the training images for npz).
  public var mean: [Float]? = nil
  public var std: [Float]? = nil
  public init() {}
}

/// `data.augment`: a random crop of each training image padded by `padding` pixels (0: none)
/// and, with `flip`, a left–right mirror half of the time; drawn from the run's seed, the
/// epoch and the sample.
public struct AugmentConfig: Sendable, Equatable, Codable {
  public var padding = 0
  public var flip = false
  public init() {}
}

public struct TrainingConfig: Sendable, Equatable, Codable {
  public var epochs: Int = 10
  public var batchSize: Int = 128
  /// Evaluation batches travel the pipeline too; sized like training batches, the few a
  /// stage may find queued in front of it take no more memory than training's do.
  public var evalBatchSize: Int = 128
  /// OpenBLAS threads of each training process.
  public var threads: Int = 1
  public init() {}
}

/// One layer of a stage's body or head. `type` picks the layer; the other keys are its
/// arguments (`out` for linear and conv, `kernel`, `stride`, `padding`, `size`).
public struct LayerConfig: Sendable, Equatable, Codable {
  public enum Kind: String, Sendable, Codable, CaseIterable {
    case linear, conv, relu, tanh, maxpool, avgpool, gap, flatten, batchnorm, dropout, residual
  }
  public var type: Kind
  /// Output features (linear) or filters (conv).
  public var out: Int? = nil
  /// Expected input features (linear) or channels (conv), checked when given.
  public var `in`: Int? = nil
  public var kernel: Int? = nil
  public var stride: Int? = nil
  public var padding: Int? = nil
  /// Pooling window.
  public var size: Int? = nil
  /// Dropout's probability of dropping a value.
  public var rate: Float? = nil
  /// A residual block's layers.
  public var layers: [LayerConfig]? = nil

  public init(_ type: Kind, out: Int? = nil) {
    self.type = type
    self.out = out
  }
}

/// A stage's auxiliary head: `linear` (global average pool for maps, then Linear→C) or
/// `mlp` (Linear→hidden, ReLU, Linear→C). The last stage's head is the network's classifier.
public struct HeadConfig: Sendable, Equatable, Codable {
  public enum Kind: String, Sendable, Codable, CaseIterable {
    case linear, mlp
    /// DGL's head for maps: adaptive average pool to ⌈H/4⌉×⌈W/4⌉, 1×1 conv + ReLU, adaptive
    /// average pool to 2×2, then the MLP.
    case mlpSR = "mlp-sr"
  }
  public var type: Kind = .linear
  public var hidden: Int = 256
  /// A BatchNorm before each of the head's hidden ReLUs (mlp-sr: after the 1×1 conv and the
  /// first Linear; mlp: after the first Linear), as DGL's auxiliary heads have: without it a
  /// head's ReLUs can all die early (model C at K = 4, seed 2: stage 2's head went constant in
  /// its first epoch, and a greedy stage whose head is dead gets no gradient).
  public var batchnorm = false
  public init() {}
}

public struct StageConfig: Sendable, Equatable, Codable {
  public var layers: [LayerConfig]
  public var head: HeadConfig = HeadConfig()
  /// Worker processes that train this stage side by side, each on its share of the batches,
  /// their weights averaged (`replicas:`). Not part of the model: one set of weights per stage.
  public var replicas = 1
  public init(layers: [LayerConfig], head: HeadConfig = HeadConfig(), replicas: Int = 1) {
    self.layers = layers
    self.head = head
    self.replicas = replicas
  }

  /// The stage as the model hash sees it: its replicas are how it is run, not what it is.
  var model: StageConfig { StageConfig(layers: layers, head: head) }
}

/// How a stage's replicas keep one set of weights (`replicas:`).
public struct ReplicaConfig: Sendable, Equatable, Codable {
  /// Every this many of its own training steps, a replica sends its weights and optimizer state
  /// to the stage's other replicas, which average them into theirs (0: only at markers, where
  /// the replicas always take their exact mean).
  public var averageEvery = 16
  public init() {}
}

/// The stages' optimizer (`optimizer:`): the update rule and its base rate.
public struct OptimizerConfig: Sendable, Equatable, Codable {
  public var kind: OptimizerKind = .sgd
  /// The base rate; `learningRateSchedule` moves it over the run.
  public var learningRate: Float = 0.05
  public var momentum: Float = 0.9
  public var nesterov = false
  public var weightDecay: Float = 5e-4
  public var beta1: Float = 0.9
  public var beta2: Float = 0.999
  public var epsilon: Float = 1e-8
  /// Per parameter group (`body`, `head`, `context`), a factor on the rate.
  public var rateScales: [String: Float] = [:]
  public init() {}

  /// The update rule these settings name.
  public var rule: OptimizerSettings {
    var rule = OptimizerSettings()
    (rule.kind, rule.momentum, rule.nesterov, rule.weightDecay) = (
      kind, momentum, nesterov, weightDecay
    )
    (rule.beta1, rule.beta2, rule.epsilon, rule.rateScales) = (beta1, beta2, epsilon, rateScales)
    return rule
  }
}

/// A whole training job. Every field has a default: the default is reference model A (an MLP
/// of four 1024-wide hidden layers, one per stage) trained greedily on Fashion-MNIST.
public struct RunConfig: Sendable, Equatable, Codable {
  public var name: String = "mlp-greedy-k4"
  public var seed: UInt64 = 1
  public var method: Method = .greedy
  public var schedule: Schedule = .pipelined
  public var data = DataConfig()
  public var training = TrainingConfig()
  public var optimizer = OptimizerConfig()
  public var learningRateSchedule = LearningRateSchedule()
  public var stages: [StageConfig] = RunConfig.mlpStages(width: 1024, count: 4)
  public var daemon = DaemonConfig()
  public var security = SecurityConfig()
  public var sid = SIDConfig()
  public var contsup = ContSupConfig()
  public var replay = ReplayConfig()
  public var dni = DNIConfig()
  public var replicas = ReplicaConfig()

  public init() {}

  /// `count` stages of [Linear `width`, ReLU].
  public static func mlpStages(width: Int, count: Int) -> [StageConfig] {
    (0..<count).map { _ in
      StageConfig(layers: [LayerConfig(.linear, out: width), LayerConfig(.relu)])
    }
  }
}
