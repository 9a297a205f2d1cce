import Learning

/// The small synthetic job most tests train: three 32-wide stages on 8×8 images, batches of 32.
public func smallConfig(_ method: Method = .greedy, epochs: Int = 2, trainSamples: Int = 600) -> RunConfig {
  var config = RunConfig()
  config.method = method
  config.data.source = .synthetic
  config.data.syntheticTrain = trainSamples
  config.data.syntheticTest = 200
  config.training.epochs = epochs
  config.training.batchSize = 32
  config.stages = RunConfig.mlpStages(width: 32, count: 3)
  return config
}

/// Why `config` is refused when its stages are built for `sampleShape` images of 10 classes,
/// or nil.
public func configError(of config: RunConfig, sampleShape: [Int] = [28, 28, 1]) -> String? {
  do {
    _ = try config.buildStages(sampleShape: sampleShape, classes: 10)
    return nil
  } catch {
    return error.description
  }
}

/// Why this YAML is refused, parsing or building, or nil.
public func configError(_ yaml: String) -> String? {
  do {
    return configError(of: try RunConfig.parse(yaml: yaml))
  } catch {
    return error.description
  }
}
