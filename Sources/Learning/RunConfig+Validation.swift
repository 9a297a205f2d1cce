import Datasets
import NN

extension RunConfig {
  /// Checks every value that can be checked without data; shapes are checked by `buildStages`.
  public func validate() throws(ConfigError) {
    func check(_ ok: Bool, _ path: String, _ message: String) throws(ConfigError) {
      if !ok { throw ConfigError(path: path, message) }
    }
    try check(!stages.isEmpty, "stages", "needs at least one stage")
    try check(training.epochs >= 1, "training.epochs", "must be at least 1, got \(training.epochs)")
    try check(
      training.batchSize >= 1, "training.batchSize", "must be at least 1, got \(training.batchSize)"
    )
    try check(training.evalBatchSize >= 1, "training.evalBatchSize", "must be at least 1")
    try check(training.threads >= 1, "training.threads", "must be at least 1")
    try check(optimizer.learningRate > 0, "optimizer.learningRate", "must be positive")
    try check((0..<1).contains(optimizer.momentum), "optimizer.momentum", "must be in [0, 1)")
    try check(optimizer.weightDecay >= 0, "optimizer.weightDecay", "must not be negative")
    try check((0..<1).contains(optimizer.beta1), "optimizer.beta1", "must be in [0, 1)")
    try check((0..<1).contains(optimizer.beta2), "optimizer.beta2", "must be in [0, 1)")
    try check(optimizer.epsilon > 0, "optimizer.epsilon", "must be positive")
    for (group, scale) in optimizer.rateScales.sorted(by: { $0.key < $1.key }) {
      try check(
        Self.parameterGroups.contains(group), "optimizer.rateScales.\(group)",
        "is not a parameter group: use \(Self.parameterGroups.joined(separator: ", "))")
      try check(
        scale >= 0 && scale.isFinite, "optimizer.rateScales.\(group)", "must be a finite number ≥ 0"
      )
    }
    try check(
      method != .contsup || optimizer.rateScales["context"] == nil, "optimizer.rateScales.context",
      "ContSup's encoders step at contsup.encoderLearningRateScale: set that one")
    try check(
      learningRateSchedule.stepEpochs >= 1, "learningRateSchedule.stepEpochs", "must be at least 1")
    try check(learningRateSchedule.gamma > 0, "learningRateSchedule.gamma", "must be positive")
    try check(
      learningRateSchedule.warmupEpochs >= 0, "learningRateSchedule.warmupEpochs",
      "must not be negative")
    try check(data.trainLimit.map { $0 >= 1 } ?? true, "data.trainLimit", "must be at least 1")
    try check(data.testLimit.map { $0 >= 1 } ?? true, "data.testLimit", "must be at least 1")
    try check(data.syntheticSide >= 4, "data.syntheticSide", "must be at least 4")
    try check(
      data.classes.map { $0 >= 2 } ?? true, "data.classes", "a classifier needs at least 2 classes")
    try check(
      (data.mean == nil) == (data.std == nil), data.mean == nil ? "data.mean" : "data.std",
      "give data.mean and data.std together")
    try check(
      data.mean.map { !$0.isEmpty && $0.count == data.std?.count } ?? true, "data.std",
      "needs as many values as data.mean")
    try check(data.std?.allSatisfy { $0 > 0 } ?? true, "data.std", "every value must be positive")
    try check(
      data.syntheticTrain >= 1 && data.syntheticTest >= 1, "data.syntheticTrain",
      "synthetic sets need samples")
    try check((0...1).contains(sid.alpha), "sid.alpha", "must be in [0, 1], got \(sid.alpha)")
    try check((0..<1).contains(sid.labelSmoothing), "sid.labelSmoothing", "must be in [0, 1)")
    try check(
      !(method == .sid && sid.direction == .reverse && sid.labelSmoothing == 0),
      "sid.labelSmoothing",
      "the reverse KL direction needs smoothed labels (the paper's theory assumes full support): "
        + "set a small ε such as 0.1"
    )
    try check(
      method != .kernel || training.batchSize >= 2, "training.batchSize",
      "the kernel method aligns pairs within a batch: a batch of \(training.batchSize) has one "
        + "class and no pairs; use 2 or more (64+ recommended)"
    )
    try check(
      method != .e2e || schedule != .sequential, "schedule",
      "e2e has no stages to train one after another: use lockstep")
    try check(
      daemon.microBatches >= 1 && daemon.microBatches <= training.batchSize, "daemon.microBatches",
      "must be between 1 and training.batchSize (\(training.batchSize))")
    try check(
      method != .contsup || stages.count >= 2, "contsup.mode",
      "context \(contsup.mode.rawValue) goes to the stages after the first, and this config has "
        + "one stage: use 2 or more, or method greedy"
    )
    try check(
      contsup.encoderLearningRateScale >= 0, "contsup.encoderLearningRateScale",
      "must not be negative")
    try check(
      !method.hasFeedback || (schedule != .sequential && schedule != .replay), "schedule",
      "\(method.rawValue) trains hidden stages on what later stages send back, which "
        + "\(schedule.rawValue) does not run: use pipelined or lockstep"
    )
    try check(dni.hidden >= 1, "dni.hidden", "must be at least 1")
    try check(data.augment.padding >= 0, "data.augment.padding", "must not be negative")
    try check(
      dni.learningRate >= 0 && dni.learningRate.isFinite, "dni.learningRate",
      "must be a finite number ≥ 0 (0 freezes the synthesisers)")
    try check(daemon.restarts >= 0, "daemon.restarts", "must not be negative")
    try check(
      daemon.checkpointEverySteps >= 0, "daemon.checkpointEverySteps",
      "must not be negative (0: at epoch ends only)")
    try check(daemon.slowdown >= 1, "daemon.slowdown", "must be at least 1 (1: no slowdown)")
    try check(
      stages.indices.contains(daemon.slowStage), "daemon.slowStage",
      "must name a stage, 0…\(stages.count - 1)")
    try check(replay.buffer >= 1, "replay.buffer", "must hold at least 1 batch")
    try check(replay.maxReuse >= 0, "replay.maxReuse", "must not be negative (0: no cap)")
    try check(
      method != .e2e || schedule != .replay, "schedule",
      "e2e has no local steps to replay: use lockstep")
    try check(
      daemon.maxInFlight >= 0, "daemon.maxInFlight", "must not be negative (0 picks 2 × stages)")
    try check(daemon.highWaterMark >= 1, "daemon.highWaterMark", "must be at least 1")
    try check(
      daemon.heartbeatMilliseconds >= 10, "daemon.heartbeatMilliseconds", "must be at least 10")
    try check(daemon.liveness >= 2, "daemon.liveness", "must be at least 2 missed heartbeats")
    try check(
      (0...65535).contains(daemon.controlPort), "daemon.controlPort",
      "must be a TCP port (0 picks a free one)")
    try check(
      !daemon.bind.isEmpty && !daemon.bind.contains("/"), "daemon.bind",
      "must be an interface address such as 127.0.0.1")
    if security.curve {
      try check(
        !security.schedulerKey.isEmpty, "security.schedulerKey",
        "CURVE needs the scheduler's key file: make one with `stagewise keygen --out scheduler`")
    }
    for (i, key) in security.allowedWorkerKeys.enumerated() {
      try check(
        Self.isZ85Key(key), "security.allowedWorkerKeys[\(i)]",
        "is not a public key (40 Z85 characters, as `stagewise keygen` prints)")
    }
  }

  /// Lays out every stage for samples of `sampleShape` (no memory allocated), checking that
  /// each stage accepts what the one before it outputs.
  public func blueprints(sampleShape: [Int], classes: Int) throws(ConfigError) -> [Stage.Blueprint]
  {
    try validate()
    var shape = sampleShape
    var previousInput: [Int]? = nil
    var plans: [Stage.Blueprint] = []
    for index in stages.indices {
      let shapes = Stage.Shapes(
        input: shape, image: sampleShape, previousInput: previousInput, classes: classes,
        isLast: index == stages.count - 1)
      let plan = try Stage.blueprint(self, index: index, shapes: shapes)
      plans.append(plan)
      previousInput = shape
      shape = plan.body.outputShape
    }
    return plans
  }

  /// The learning rate of update number `step` (0-based, counted per stage and, under
  /// `sequential`, per phase) in epochs of `stepsPerEpoch` updates.
  public func learningRate(step: Int, stepsPerEpoch: Int) -> Float {
    learningRateSchedule.rate(
      base: optimizer.learningRate, step: step, stepsPerEpoch: stepsPerEpoch,
      totalEpochs: training.epochs)
  }

  /// Whether stage `index`'s head is scored in evaluation: under e2e only the last stage's
  /// head is trained (the others are never scored); kernel hidden stages have no head at all.
  public func scoresHead(ofStage index: Int) -> Bool { method != .e2e || index == stages.count - 1 }

  /// The groups of a stage's parameters that `optimizer.rateScales` may name.
  public static let parameterGroups = ["body", "head", "context"]

  /// The stages' optimizer: `optimizer`, with ContSup's encoders (group `context`) at
  /// `contsup.encoderLearningRateScale` × the rate.
  public var stageOptimizer: OptimizerSettings {
    var settings = optimizer
    if method == .contsup { settings.rateScales["context"] = contsup.encoderLearningRateScale }
    return settings
  }

  /// Builds stage `index` alone (what a worker process does).
  public func buildStage(_ index: Int, sampleShape: [Int], classes: Int) throws(ConfigError)
    -> Stage
  {
    let plans = try blueprints(sampleShape: sampleShape, classes: classes)
    guard plans.indices.contains(index) else {
      throw ConfigError(path: "stages", "there is no stage \(index); the config has \(plans.count)")
    }
    return Stage(plans[index], index: index, seed: seed, optimizer: stageOptimizer)
  }

  /// Builds every stage (what the one-process trainer does).
  public func buildStages(sampleShape: [Int], classes: Int) throws(ConfigError) -> [Stage] {
    try blueprints(sampleShape: sampleShape, classes: classes).enumerated().map {
      Stage($1, index: $0, seed: seed, optimizer: stageOptimizer)
    }
  }

  /// `data.augment` as the feeders apply it (nil when it moves nothing), drawn from the seed.
  public var augmentation: Augmentation? {
    guard data.augment.padding > 0 || data.augment.flip else { return nil }
    var draws = SeededGenerator(seed: seed, stream: 0x4155_4700_0000_0000)
    return Augmentation(padding: data.augment.padding, flip: data.augment.flip, seed: draws.next())
  }

  /// Loads the training and test sets this config names.
  /// `data.mean` and `data.std`, when given.
  var givenNormalisation: ImageNormalisation? {
    guard let mean = data.mean, let std = data.std, mean.count == std.count, !mean.isEmpty else {
      return nil
    }
    return ImageNormalisation(mean: mean, std: std)
  }

  /// This config with the normalisation its data was read with stated in `data.mean` and
  /// `data.std` (a run directory's config.yaml then carries it: `eval`, `predict`, `export`
  /// and a resumed run read images exactly as training did, without the training set).
  public func stating(_ normalisation: ImageNormalisation) -> RunConfig {
    var copy = self
    (copy.data.mean, copy.data.std) = (normalisation.mean, normalisation.std)
    return copy
  }

  public func loadData() throws(DataError) -> (train: Dataset, test: Dataset) {
    switch data.source {
    case .fashionMNIST:
      let train = try FashionMNIST.load(
        .train, from: data.path, normalisation: givenNormalisation ?? FashionMNIST.normalisation)
      let test = try FashionMNIST.load(
        .test, from: data.path, normalisation: givenNormalisation ?? FashionMNIST.normalisation)
      return (train.prefix(data.trainLimit), test.prefix(data.testLimit))
    case .npz:
      let (train, test) = try NPZDataset.load(
        data.path, classes: data.classes, normalisation: givenNormalisation)
      return (train.prefix(data.trainLimit), test.prefix(data.testLimit))
    case .synthetic:
      let side = data.syntheticSide
      return (
        SyntheticDataset.make(count: data.syntheticTrain, side: side, seed: seed &+ 100),
        SyntheticDataset.make(count: data.syntheticTest, side: side, seed: seed &+ 200)
      )
    }
  }
}

extension RunConfig {
  /// Whether `text` looks like a CURVE key in Z85: 40 characters of its alphabet.
  static func isZ85Key(_ text: String) -> Bool {
    let alphabet = Set(
      "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#")
    return text.count == 40 && text.allSatisfy(alphabet.contains)
  }
}
