import ArgumentParser
import Datasets
import Foundation
import Learning
import NN
import Runtime

/// `stagewise predict RUN_DIR --data FILE`: the trained network's classes and probabilities
/// for new images.
struct Predict: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract:
      "Predict classes with a trained run: one line per image (index, class, probability), or an "
      + ".npz with --out."
  )

  @Argument(help: "A run directory (config.yaml and stage-K.safetensors).") var runDirectory: String
  @Option(
    help:
      ArgumentHelp(
        "Images: a .npy (N×H×W or N×H×W×C, uint8 or float32) or an .npz holding x (or x_test), "
          + "with "
          + "y (or y_test) for an accuracy.")
  )
  var data: String
  @Option(
    help:
      ArgumentHelp(
        "Write classes (int64 [N]), probabilities and logits (float32 [N, classes]) to this .npz "
          + "instead of printing them.")
  )
  var out: String?

  func run() throws {
    let run = try TrainedRun(runDirectory)
    let images = try ImageArrays(path: data)
    guard images.sampleShape == run.train.sampleShape else {
      throw RuntimeError(
        "\(data) holds images of \(images.sampleShape) (H, W, C); the run trained on "
          + "\(run.train.sampleShape)"
      )
    }
    let floatImages = images.raw.isFloat
    guard floatImages != run.byteImages else {
      throw RuntimeError(
        "\(data) holds \(floatImages ? "float32" : "uint8") images; the run trained on "
          + "\(run.byteImages ? "uint8" : "float32") ones: convert them (x.astype) so they are "
          + "read the same way"
      )
    }
    let pixels = run.train.normalisation.apply(images.raw)
    let (n, size, classes) = (images.count, run.train.sampleSize, run.train.classes)
    var logits = [Float]()
    var probabilities = [Float]()
    var predicted = [Int64]()
    let batchSize = run.config.training.evalBatchSize
    for start in stride(from: 0, to: n, by: batchSize) {
      let count = min(batchSize, n - start)
      let x = Tensor(
        shape: [count] + run.train.sampleShape,
        storage: Array(pixels[(start * size)..<((start + count) * size)]))
      let z = run.trainer.infer(Batch(images: x, labels: [Int32](repeating: 0, count: count)))
        .last!!
      let p = softmax(z)
      logits += z.storage
      probabilities += p.storage
      for i in 0..<count { predicted.append(Int64(argmax(p.storage, row: i, width: classes))) }
    }
    if let out {
      let members = [
        ("classes.npy", NPYArray.encode(shape: [n], integers: predicted)),
        ("probabilities.npy", NPYArray.encode(shape: [n, classes], floats: probabilities)),
        ("logits.npy", NPYArray.encode(shape: [n, classes], floats: logits)),
      ]
      try AtomicFile.write(try ZipArchive.encode(members, compress: false), to: out)
      Console.status("wrote \(out): classes, probabilities and logits of \(n) images")
    } else {
      for i in 0..<n {
        let probability = probabilities[i * classes + Int(predicted[i])]
        Console.print("\(i)\t\(predicted[i])\t\(String(format: "%.4f", probability))")
      }
    }
    if let labels = images.labels {
      let correct = zip(predicted, labels).filter { $0 == Int64($1) }.count
      Console.status(
        String(
          format: "accuracy %.2f %% (%d of %d against the file's labels)",
          Double(correct) / Double(max(n, 1)) * 100, correct, n))
    }
  }

  /// The column of the largest value in row `row` of a [rows, width] matrix.
  func argmax(_ values: [Float], row: Int, width: Int) -> Int {
    var best = 0
    for j in 1..<width where values[row * width + j] > values[row * width + best] { best = j }
    return best
  }
}
