import ArgumentParser
import Export
import Learning
import Wire

/// `stagewise export RUN_DIR --onnx FILE`: the trained network as an ONNX model.
struct ExportCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "export",
    abstract:
      "Write a run's trained network as an ONNX model (opset 17) for ONNX Runtime and other "
      + "runtimes.",
    discussion: """
      Input `images`: [N, H, W, C] float32, the values as the data file stores them \
      (bytes as 0…255, channels last); the model normalises them as training did. \
      Output `logits`: [N, classes].
      """)

  @Argument(help: "A run directory (config.yaml and stage-K.safetensors).") var runDirectory: String
  @Option(name: .customLong("onnx"), help: "The ONNX file to write (atomically).") var onnx: String
  @Flag(
    help:
      ArgumentHelp(
        "Also output every scoring stage's head as logits_stage_K (accuracy by depth outside "
          + "Stagewise).")
  )
  var allHeads = false

  func run() throws {
    let run = try TrainedRun(runDirectory)
    let bytes = try ONNXExport.model(
      stages: run.trainer.stages, config: run.config, sampleShape: run.train.sampleShape,
      normalisation: run.train.normalisation,
      byteImages: run.byteImages, allHeads: allHeads,
      producerVersion: "protocol \(Protocol.version)")
    try AtomicFile.write(bytes, to: onnx)
    let shape = (["N"] + run.train.sampleShape.map(String.init)).joined(separator: ", ")
    Console.print(
      "wrote \(onnx) (\(bytes.count) bytes, ONNX opset 17): input images [\(shape)] float32 "
        + "(\(run.byteImages ? "bytes as 0…255" : "stored floats")), output logits [N, "
        + "\(run.train.classes)]"
    )
  }
}
