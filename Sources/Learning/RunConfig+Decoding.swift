import Foundation
import NN
import Yams

extension RunConfig {
  enum CodingKeys: String, CodingKey, CaseIterable {
    case name, seed, method, schedule, data, training, optimizer, learningRateSchedule, stages,
      daemon, security, sid, contsup, replay, dni
  }

  public init(from decoder: any Decoder) throws {
    try decoder.rejectUnknownKeys(CodingKeys.self)
    let c = try decoder.container(keyedBy: CodingKeys.self)
    let d = RunConfig()
    name = try c.value(.name, or: d.name)
    seed = try c.value(.seed, or: d.seed)
    method = try c.choice(.method, or: d.method)
    schedule = try c.choice(.schedule, or: d.schedule)
    data = try c.value(.data, or: d.data)
    training = try c.value(.training, or: d.training)
    optimizer = try c.value(.optimizer, or: d.optimizer)
    learningRateSchedule = try c.value(.learningRateSchedule, or: d.learningRateSchedule)
    stages = try c.value(.stages, or: d.stages)
    daemon = try c.value(.daemon, or: d.daemon)
    security = try c.value(.security, or: d.security)
    sid = try c.value(.sid, or: d.sid)
    contsup = try c.value(.contsup, or: d.contsup)
    replay = try c.value(.replay, or: d.replay)
    dni = try c.value(.dni, or: d.dni)
  }

  /// Decodes YAML text; every error names its key path.
  public static func parse(yaml text: String) throws(ConfigError) -> RunConfig {
    do {
      // An empty document means "all defaults".
      if text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty { return RunConfig() }
      return try YAMLDecoder().decode(RunConfig.self, from: text)
    } catch {
      throw ConfigError.from(error)
    }
  }

  /// Reads and decodes a YAML file.
  public static func load(path: String) throws(ConfigError) -> RunConfig {
    guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
      throw ConfigError(path: "", "cannot read config file \(path): check the path")
    }
    do {
      return try parse(yaml: text)
    } catch {
      throw ConfigError(path: error.path, "\(error.message) (in \(path))")
    }
  }

  /// FNV-1a of the resolved YAML (less `security`): checkpoints record it, so one from
  /// another config is noticed.
  public var configHash: String {
    var hashed = self
    hashed.security = SecurityConfig()
    let hash = hashed.yaml().utf8.reduce(UInt64(0xcbf2_9ce4_8422_2325)) {
      ($0 ^ UInt64($1)) &* 0x100_0000_01b3
    }
    return String(hash, radix: 16)
  }

  /// What the weights mean, and what a resumed run must keep: the seed (which also orders the
  /// batches), the method and its settings, the stages (layers, heads, the split), the
  /// optimizer's kind (its state's layout), the data set's source and size and the batch size
  /// (which place a checkpoint within an epoch). Everything else — epochs, rates and the
  /// learning-rate schedule, threads, the schedule, the daemon, security — may change when a
  /// stopped run goes on.
  struct ModelIdentity: Encodable {
    var seed: UInt64, method: Method, stages: [StageConfig], sid: SIDConfig, contsup: ContSupConfig,
      dni: DNIConfig?
    var optimizer: OptimizerKind, data: DataSource, trainLimit: Int?, syntheticTrain: Int,
      syntheticSide: Int
    var batchSize: Int
  }

  var modelIdentity: ModelIdentity {
    ModelIdentity(
      seed: seed, method: method, stages: stages, sid: sid, contsup: contsup,
      dni: method == .dni || method == .cdni
        ? {
          var d = dni
          d.learningRate = 0
          return d
        }() : nil,  // a rate may change
      optimizer: optimizer.kind, data: data.source,
      trainLimit: data.trainLimit, syntheticTrain: data.syntheticTrain,
      syntheticSide: data.syntheticSide,
      batchSize: training.batchSize)
  }

  /// FNV-1a of `ModelIdentity`'s YAML: checkpoints record it as `model_hash`.
  public var modelHash: String {
    let yaml = (try? YAMLEncoder().encode(modelIdentity)) ?? ""
    return String(
      yaml.utf8.reduce(UInt64(0xcbf2_9ce4_8422_2325)) { ($0 ^ UInt64($1)) &* 0x100_0000_01b3 },
      radix: 16)
  }

  /// The metadata every checkpoint carries about its config.
  public var checkpointMetadata: [String: String] {
    ["model_hash": modelHash, "config_hash": configHash]
  }

  /// Why a checkpoint with `metadata` does not belong to this config, or nil when it does: by
  /// its model hash, or — a checkpoint from before model hashes — by its whole config's hash.
  public func mismatch(checkpoint metadata: [String: String]) -> String? {
    if let stored = metadata["model_hash"] {
      return stored == modelHash
        ? nil
        : "was written for another model (hash \(stored), this config's is \(modelHash)): use the "
          + "run's own config.yaml"
    }
    if let stored = metadata["config_hash"], stored != configHash {
      return
        "was written for another config (hash \(stored), this one is \(configHash)): use the run's "
        + "own config.yaml"
    }
    return nil
  }

  /// The identity fields in which `other` differs from this config (for error messages).
  public func modelDifferences(from other: RunConfig) -> [String] {
    let (a, b) = (modelIdentity, other.modelIdentity)
    var names: [String] = []
    if a.seed != b.seed { names.append("seed") }
    if a.method != b.method { names.append("method") }
    if a.stages != b.stages { names.append("stages") }
    if a.sid != b.sid || a.contsup != b.contsup || a.dni != b.dni {
      names.append("method settings")
    }
    if a.optimizer != b.optimizer { names.append("optimizer.kind") }
    if a.data != b.data || a.trainLimit != b.trainLimit || a.syntheticTrain != b.syntheticTrain
      || a.syntheticSide != b.syntheticSide
    {
      names.append("data")
    }
    if a.batchSize != b.batchSize { names.append("training.batchSize") }
    return names
  }

  /// The config as YAML, every default written out.
  public func yaml() -> String {
    (try? YAMLEncoder().encode(self)) ?? ""
  }
}

extension DataConfig {
  enum CodingKeys: String, CodingKey, CaseIterable {
    case source, path, trainLimit, testLimit, syntheticTrain, syntheticTest, syntheticSide, augment,
      classes, mean, std
  }

  public init(from decoder: any Decoder) throws {
    try decoder.rejectUnknownKeys(CodingKeys.self)
    let c = try decoder.container(keyedBy: CodingKeys.self)
    let d = DataConfig()
    source = try c.choice(.source, or: d.source)
    path = try c.value(.path, or: d.path)
    trainLimit = try c.decodeIfPresent(Int.self, forKey: .trainLimit)
    testLimit = try c.decodeIfPresent(Int.self, forKey: .testLimit)
    syntheticTrain = try c.value(.syntheticTrain, or: d.syntheticTrain)
    syntheticTest = try c.value(.syntheticTest, or: d.syntheticTest)
    syntheticSide = try c.value(.syntheticSide, or: d.syntheticSide)
    augment = try c.value(.augment, or: d.augment)
    classes = try c.decodeIfPresent(Int.self, forKey: .classes)
    mean = try c.decodeIfPresent([Float].self, forKey: .mean)
    std = try c.decodeIfPresent([Float].self, forKey: .std)
  }
}

extension AugmentConfig {
  enum CodingKeys: String, CodingKey, CaseIterable { case padding, flip }

  public init(from decoder: any Decoder) throws {
    try decoder.rejectUnknownKeys(CodingKeys.self)
    let c = try decoder.container(keyedBy: CodingKeys.self)
    padding = try c.value(.padding, or: AugmentConfig().padding)
    flip = try c.value(.flip, or: AugmentConfig().flip)
  }
}

extension SIDConfig {
  enum CodingKeys: String, CodingKey, CaseIterable {
    case alpha, labelSmoothing, direction, beliefInput
  }

  public init(from decoder: any Decoder) throws {
    try decoder.rejectUnknownKeys(CodingKeys.self)
    let c = try decoder.container(keyedBy: CodingKeys.self)
    let d = SIDConfig()
    alpha = try c.value(.alpha, or: d.alpha)
    labelSmoothing = try c.value(.labelSmoothing, or: d.labelSmoothing)
    direction = try c.choice(.direction, or: d.direction)
    beliefInput = try c.value(.beliefInput, or: d.beliefInput)
  }
}

extension ReplayConfig {
  enum CodingKeys: String, CodingKey, CaseIterable { case buffer, maxReuse }

  public init(from decoder: any Decoder) throws {
    try decoder.rejectUnknownKeys(CodingKeys.self)
    let c = try decoder.container(keyedBy: CodingKeys.self)
    buffer = try c.value(.buffer, or: ReplayConfig().buffer)
    maxReuse = try c.value(.maxReuse, or: ReplayConfig().maxReuse)
  }
}

extension DNIConfig {
  enum CodingKeys: String, CodingKey, CaseIterable {
    case synthesiser, hidden, auxiliaryLoss, optimizer, learningRate
  }

  public init(from decoder: any Decoder) throws {
    try decoder.rejectUnknownKeys(CodingKeys.self)
    let c = try decoder.container(keyedBy: CodingKeys.self)
    synthesiser = try c.choice(.synthesiser, or: DNIConfig().synthesiser)
    hidden = try c.value(.hidden, or: DNIConfig().hidden)
    auxiliaryLoss = try c.value(.auxiliaryLoss, or: DNIConfig().auxiliaryLoss)
    optimizer = try c.choice(.optimizer, or: DNIConfig().optimizer)
    learningRate = try c.value(.learningRate, or: DNIConfig().learningRate)
  }
}

extension ContSupConfig {
  enum CodingKeys: String, CodingKey, CaseIterable { case mode, encoderLearningRateScale }

  public init(from decoder: any Decoder) throws {
    try decoder.rejectUnknownKeys(CodingKeys.self)
    let c = try decoder.container(keyedBy: CodingKeys.self)
    mode = try c.choice(.mode, or: ContSupConfig().mode)
    encoderLearningRateScale = try c.value(
      .encoderLearningRateScale, or: ContSupConfig().encoderLearningRateScale)
  }
}

extension SecurityConfig {
  enum CodingKeys: String, CodingKey, CaseIterable {
    case curve, schedulerKey, allowedWorkerKeys
  }

  public init(from decoder: any Decoder) throws {
    try decoder.rejectUnknownKeys(CodingKeys.self)
    let c = try decoder.container(keyedBy: CodingKeys.self)
    let d = SecurityConfig()
    curve = try c.value(.curve, or: d.curve)
    schedulerKey = try c.value(.schedulerKey, or: d.schedulerKey)
    allowedWorkerKeys = try c.value(.allowedWorkerKeys, or: d.allowedWorkerKeys)
  }
}

extension DaemonConfig {
  enum CodingKeys: String, CodingKey, CaseIterable {
    case maxInFlight, highWaterMark, heartbeatMilliseconds, liveness, bind, controlPort,
      statsMilliseconds, microBatches, slowStage, slowdown, restarts
    case checkpointEverySteps, wireFormat
  }

  public init(from decoder: any Decoder) throws {
    try decoder.rejectUnknownKeys(CodingKeys.self)
    let c = try decoder.container(keyedBy: CodingKeys.self)
    let d = DaemonConfig()
    maxInFlight = try c.value(.maxInFlight, or: d.maxInFlight)
    highWaterMark = try c.value(.highWaterMark, or: d.highWaterMark)
    heartbeatMilliseconds = try c.value(.heartbeatMilliseconds, or: d.heartbeatMilliseconds)
    liveness = try c.value(.liveness, or: d.liveness)
    bind = try c.value(.bind, or: d.bind)
    controlPort = try c.value(.controlPort, or: d.controlPort)
    statsMilliseconds = try c.value(.statsMilliseconds, or: d.statsMilliseconds)
    microBatches = try c.value(.microBatches, or: d.microBatches)
    slowStage = try c.value(.slowStage, or: d.slowStage)
    slowdown = try c.value(.slowdown, or: d.slowdown)
    restarts = try c.value(.restarts, or: d.restarts)
    checkpointEverySteps = try c.value(.checkpointEverySteps, or: d.checkpointEverySteps)
    wireFormat = try c.choice(.wireFormat, or: d.wireFormat)
  }
}

extension TrainingConfig {
  enum CodingKeys: String, CodingKey, CaseIterable {
    case epochs, batchSize, evalBatchSize, threads
  }

  public init(from decoder: any Decoder) throws {
    try decoder.rejectUnknownKeys(CodingKeys.self)
    let c = try decoder.container(keyedBy: CodingKeys.self)
    let d = TrainingConfig()
    epochs = try c.value(.epochs, or: d.epochs)
    batchSize = try c.value(.batchSize, or: d.batchSize)
    evalBatchSize = try c.value(.evalBatchSize, or: d.evalBatchSize)
    threads = try c.value(.threads, or: d.threads)
  }
}

extension LayerConfig {
  enum CodingKeys: String, CodingKey, CaseIterable {
    case type, out, `in`, kernel, stride, padding, size, rate, layers
  }

  public init(from decoder: any Decoder) throws {
    try decoder.rejectUnknownKeys(CodingKeys.self)
    let c = try decoder.container(keyedBy: CodingKeys.self)
    guard c.contains(.type) else {
      throw ConfigError(
        codingPath: decoder.codingPath,
        "a layer needs `type`, one of: \(Kind.allCases.map(\.rawValue).joined(separator: ", "))")
    }
    type = try c.choice(.type, or: .relu)
    out = try c.decodeIfPresent(Int.self, forKey: .out)
    self.in = try c.decodeIfPresent(Int.self, forKey: .in)
    kernel = try c.decodeIfPresent(Int.self, forKey: .kernel)
    stride = try c.decodeIfPresent(Int.self, forKey: .stride)
    padding = try c.decodeIfPresent(Int.self, forKey: .padding)
    size = try c.decodeIfPresent(Int.self, forKey: .size)
    rate = try c.decodeIfPresent(Float.self, forKey: .rate)
    layers = try c.decodeIfPresent([LayerConfig].self, forKey: .layers)
  }
}

extension HeadConfig {
  enum CodingKeys: String, CodingKey, CaseIterable { case type, hidden, batchnorm }

  public init(from decoder: any Decoder) throws {
    try decoder.rejectUnknownKeys(CodingKeys.self)
    let c = try decoder.container(keyedBy: CodingKeys.self)
    type = try c.choice(.type, or: HeadConfig().type)
    hidden = try c.value(.hidden, or: HeadConfig().hidden)
    batchnorm = try c.value(.batchnorm, or: HeadConfig().batchnorm)
  }

  /// `batchnorm` only when set, so that configs without it keep their model hash (and their
  /// checkpoints stay resumable).
  public func encode(to encoder: any Encoder) throws {
    var c = encoder.container(keyedBy: CodingKeys.self)
    try c.encode(type, forKey: .type)
    try c.encode(hidden, forKey: .hidden)
    if batchnorm { try c.encode(batchnorm, forKey: .batchnorm) }
  }
}

extension StageConfig {
  enum CodingKeys: String, CodingKey, CaseIterable { case layers, head }

  public init(from decoder: any Decoder) throws {
    try decoder.rejectUnknownKeys(CodingKeys.self)
    let c = try decoder.container(keyedBy: CodingKeys.self)
    layers = try c.decode([LayerConfig].self, forKey: .layers)
    head = try c.value(.head, or: HeadConfig())
  }
}

extension OptimizerSettings: Codable {
  enum CodingKeys: String, CodingKey, CaseIterable {
    case kind, learningRate, momentum, nesterov, weightDecay, beta1, beta2, epsilon, rateScales
  }

  public init(from decoder: any Decoder) throws {
    try decoder.rejectUnknownKeys(CodingKeys.self)
    let c = try decoder.container(keyedBy: CodingKeys.self)
    let d = RunConfig.defaultOptimizer
    self.init()
    kind = try c.choice(.kind, or: d.kind)
    learningRate = try c.value(.learningRate, or: d.learningRate)
    momentum = try c.value(.momentum, or: d.momentum)
    nesterov = try c.value(.nesterov, or: d.nesterov)
    weightDecay = try c.value(.weightDecay, or: d.weightDecay)
    beta1 = try c.value(.beta1, or: d.beta1)
    beta2 = try c.value(.beta2, or: d.beta2)
    epsilon = try c.value(.epsilon, or: d.epsilon)
    rateScales = try c.value(.rateScales, or: d.rateScales)
  }

  public func encode(to encoder: any Encoder) throws {
    var c = encoder.container(keyedBy: CodingKeys.self)
    try c.encode(kind, forKey: .kind)
    try c.encode(learningRate, forKey: .learningRate)
    try c.encode(momentum, forKey: .momentum)
    try c.encode(nesterov, forKey: .nesterov)
    try c.encode(weightDecay, forKey: .weightDecay)
    try c.encode(beta1, forKey: .beta1)
    try c.encode(beta2, forKey: .beta2)
    try c.encode(epsilon, forKey: .epsilon)
    if !rateScales.isEmpty { try c.encode(rateScales, forKey: .rateScales) }
  }
}

extension LearningRateSchedule: Codable {
  enum CodingKeys: String, CodingKey, CaseIterable {
    case kind, stepEpochs, gamma, minimum, warmupEpochs
  }

  public init(from decoder: any Decoder) throws {
    try decoder.rejectUnknownKeys(CodingKeys.self)
    let c = try decoder.container(keyedBy: CodingKeys.self)
    let d = RunConfig.defaultSchedule
    self.init()
    kind = try c.choice(.kind, or: d.kind)
    stepEpochs = try c.value(.stepEpochs, or: d.stepEpochs)
    gamma = try c.value(.gamma, or: d.gamma)
    minimum = try c.value(.minimum, or: d.minimum)
    warmupEpochs = try c.value(.warmupEpochs, or: d.warmupEpochs)
  }

  public func encode(to encoder: any Encoder) throws {
    var c = encoder.container(keyedBy: CodingKeys.self)
    try c.encode(kind, forKey: .kind)
    try c.encode(stepEpochs, forKey: .stepEpochs)
    try c.encode(gamma, forKey: .gamma)
    try c.encode(minimum, forKey: .minimum)
    try c.encode(warmupEpochs, forKey: .warmupEpochs)
  }
}
