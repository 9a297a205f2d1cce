import ArgumentParser
import Foundation
import Learning
import NN
import Runtime

/// `stagewise inspect PATH`: what a checkpoint or a run directory holds.
struct Inspect: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Show a checkpoint (.safetensors) or a run directory.")

  @Argument(help: "A .safetensors file or a run directory.") var path: String

  func run() throws {
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
      throw ValidationError("\(path) does not exist")
    }
    if isDirectory.boolValue { try showRun() } else { try showCheckpoint(path) }
  }

  func showCheckpoint(_ file: String) throws {
    let (tensors, metadata) = try Safetensors.read(file)
    Console.print("\(file)")
    for (key, value) in metadata.sorted(by: { $0.key < $1.key }) {
      Console.print("  \(key): \(value)")
    }
    var total = 0
    for (name, tensor) in tensors.sorted(by: { $0.key < $1.key }) {
      let n = Double(max(tensor.count, 1))
      let mean = tensor.storage.reduce(0.0) { $0 + Double($1) } / n
      let rms = (tensor.storage.reduce(0.0) { $0 + Double($1) * Double($1) } / n).squareRoot()
      Console.print(
        String(format: "  %-28@ %-16@ mean %+.4f  rms %.4f", name, "\(tensor.shape)", mean, rms))
      total += tensor.count
    }
    Console.print("  \(tensors.count) tensors, \(total) values")
  }

  func showRun() throws {
    Console.print("run \(path)")
    if let manifest = RunManifest.read(path) {
      Console.print(
        "  job \(manifest.job), \(manifest.schedule), state "
          + "\(manifest.state)\(manifest.detail.map { " (\($0))" } ?? ""), "
          + "\(manifest.epochsCompleted) epochs"
      )
      for stage in manifest.stages {
        let rejected = stage.rejected?.values.reduce(0, +) ?? 0
        Console.print(
          "  stage \(stage.stage): \(stage.host) pid \(stage.pid), \(stage.dataEndpoint), rejected "
            + "\(rejected)\(stage.replay.map { ", replay draws \($0.draws)" } ?? "")"
        )
      }
    }
    let metrics = (try? String(contentsOfFile: "\(path)/metrics.jsonl", encoding: .utf8)) ?? ""
    let reports = metrics.split(separator: "\n").compactMap {
      try? JSONDecoder.stagewise.decode(EpochReport.self, from: Data($0.utf8))
    }
    if let last = reports.last {
      Console.print(
        "  \(reports.count) epochs in metrics.jsonl; last: "
          + EpochReport.line(last, of: reports.count))
    }
    let files = (try? FileManager.default.contentsOfDirectory(atPath: path).sorted()) ?? []
    for file in files where file.hasSuffix(".safetensors") {
      do {
        let (tensors, metadata) = try Safetensors.read("\(path)/\(file)")
        Console.print("  \(file): \(tensors.count) tensors, step \(metadata["step"] ?? "?")")
      } catch {
        Console.print("  \(file): UNREADABLE — \(error)")
      }
    }
  }
}
