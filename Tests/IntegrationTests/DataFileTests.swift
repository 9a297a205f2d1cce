import Datasets
import Foundation
import Learning
import TestSupport
import Testing

/// A daemon config reading `path` as an npz; ContSup with its image context, so the stored
/// images travel the wire too (floats for colour, bytes for grey).
func npzConfig(_ path: String) -> RunConfig {
  var config = daemonConfig(epochs: 3)
  config.data = DataConfig()
  config.data.source = .npz
  config.data.path = path
  config.method = .contsup
  config.contsup.mode = .E
  return config
}

@Suite("Data files through the command line", .serialized)
struct DataFileTests {
  /// The same generated set trains in `train` and under `launch` to the same weights, and
  /// learns: grey uint8 and colour float32 images.
  @Test(arguments: [false, true])
  func npzTrainsInTrainAndLaunch(colour: Bool) throws {
    let dir = try temporaryDirectory("npz")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    try writeNPZ(syntheticNPZMembers(colour: colour, train: 600, test: 200), to: "\(dir)/data.npz", compress: colour)
    let (jobDir, path) = try prepare(npzConfig("\(dir)/data.npz"))
    defer { try? FileManager.default.removeItem(atPath: jobDir) }
    let trained = try ChildProcess.stagewise(["train", "--config", path, "--out", "\(dir)/train"])
    #expect(trained.status == 0, "\(trained.stderr)")
    let launched = try ChildProcess.stagewise(["launch", "--config", path, "--out", "\(dir)/launch"], timeout: .seconds(180))
    #expect(launched.status == 0, "\(launched.stderr)")
    let reports = metricsLines("\(dir)/launch")
    #expect(reports.count == 3 && reports.last!.test.accuracy > 0.5, "well above the 10 % of chance")
    try expectSameFinalWeights("\(dir)/train", "\(dir)/launch", stages: 3)
  }

  @Test(arguments: [
    ("missing", "has no array x_test"),
    ("dtype", "has dtype <i4; images must be uint8 or float32"),
    ("label", "y_test[0] = 10 is outside 0…9"),
    ("truncated", "a truncated or non-npz file"),
    ("not an npz", "a truncated or non-npz file"),
  ])
  func badNPZFileIsOneLine(kind: String, expected: String) throws {
    let dir = try temporaryDirectory("npz-bad")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    var members = syntheticNPZMembers(colour: false, train: 40, test: 10)
    switch kind {
    case "missing": members.removeAll { $0.name == "x_test.npy" }
    case "dtype": members[0].content = NPYArray.encode(descr: "<i4", shape: [40, 8, 8], data: [UInt8](repeating: 0, count: 40 * 64 * 4))
    case "label": members[3].content = NPYArray.encode(shape: [10], integers: [Int64](repeating: 10, count: 10))
    default: break
    }
    try writeNPZ(members, to: "\(dir)/data.npz")
    if kind == "truncated" { try Data(try Data(contentsOf: URL(fileURLWithPath: "\(dir)/data.npz")).prefix(300)).write(to: URL(fileURLWithPath: "\(dir)/data.npz")) }
    if kind == "not an npz" { try "x_train,y_train\n0,1\n".write(toFile: "\(dir)/data.npz", atomically: true, encoding: .utf8) }
    var config = npzConfig("\(dir)/data.npz")
    if kind == "label" { config.data.classes = 10 }
    try config.yaml().write(toFile: "\(dir)/c.yaml", atomically: true, encoding: .utf8)
    for command in ["train", "launch"] {
      let result = try ChildProcess.stagewise([command, "--config", "\(dir)/c.yaml", "--out", "\(dir)/run-\(command)"])
      expectOneLineError(result, mentioning: expected)
    }
  }
}
