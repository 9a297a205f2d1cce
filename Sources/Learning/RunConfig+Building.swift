import Datasets
import NN

/// What a config builds: the stages' layout and parameters, their optimizer, the data.
extension RunConfig {
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

  /// The stages' optimizer: `optimizer`, with ContSup's encoders (group `context`) at
  /// `contsup.encoderLearningRateScale` × the rate.
  public var stageOptimizer: OptimizerSettings {
    var settings = optimizer.rule
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

  /// Loads the training and test sets this config names.
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
