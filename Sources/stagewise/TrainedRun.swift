import Datasets
import Learning

/// A run directory read back: its config (with the normalisation it trained with), its data
/// set (for the image shape and classes), and its stages holding their saved weights.
struct TrainedRun {
  let config: RunConfig
  let train: Dataset
  let test: Dataset
  let trainer: Trainer

  init(_ directory: String) throws {
    config = try RunConfig.load(path: "\(directory)/config.yaml")
    (train, test) = try config.loadData()
    trainer = try Trainer(config: config, train: train, test: test)
    for stage in trainer.stages {
      try stage.restore(from: "\(directory)/stage-\(stage.index).safetensors", config: config)
    }
  }

  var byteImages: Bool { !train.raw.isFloat }
}
