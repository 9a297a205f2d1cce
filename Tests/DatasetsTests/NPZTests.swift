import Foundation
import TestSupport
import Testing

@testable import Datasets

/// The members of a synthetic npz with the one called `name` replaced by `content` (removed when nil).
func members(colour: Bool = false, replacing name: String, with content: [UInt8]?) -> [(name: String, content: [UInt8])] {
  syntheticNPZMembers(colour: colour, train: 40, test: 10).compactMap { member in
    member.name == name ? content.map { (name, $0) } : member
  }
}

@Suite("NumPy npz data sets")
struct NPZTests {
  @Test(arguments: [(false, false), (false, true), (true, false), (true, true)])
  func greyAndColourLoadStoredOrDeflated(colour: Bool, compress: Bool) throws {
    try withTemporaryDirectory { dir in
      try writeNPZ(syntheticNPZMembers(colour: colour, train: 40, test: 10), to: "\(dir)/d.npz", compress: compress)
      let (train, test) = try NPZDataset.load("\(dir)/d.npz")
      let reference = SyntheticDataset.make(count: 40, seed: 101)
      #expect(train.count == 40 && test.count == 10 && train.classes == 10)
      #expect(train.sampleShape == [8, 8, colour ? 3 : 1])
      #expect(train.labels == reference.labels)
      guard case .bytes(let bytes) = reference.raw else { return }
      if colour {
        guard case .floats(let floats) = train.raw else { Issue.record("colour images are floats"); return }
        #expect(floats[3 * 17 + 1] == 1 - Float(bytes[17]) / 255)
      } else {
        #expect(train.raw == .bytes(bytes))
      }
      // Normalised per channel with the training images' own mean and standard deviation.
      let channels = colour ? 3 : 1
      for c in 0..<channels {
        let values = stride(from: c, to: train.pixels.count, by: channels).map { Double(train.pixels[$0]) }
        let mean = values.reduce(0, +) / Double(values.count)
        let variance = values.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(values.count)
        #expect(abs(mean) < 1e-4 && abs(variance - 1) < 1e-3, "channel \(c): mean \(mean), variance \(variance)")
      }
    }
  }

  /// Keras' CIFAR-10 keeps its labels as N×1 uint8; a given normalisation is used as given.
  @Test func columnLabelsOfAnyIntegerTypeAndGivenNormalisation() throws {
    try withTemporaryDirectory { dir in
      let labels = (0..<10).map { UInt8($0 % 3) }
      let npz = members(replacing: "y_test.npy", with: NPYArray.encode(descr: "|u1", shape: [10, 1], data: labels))
      try writeNPZ(npz, to: "\(dir)/d.npz")
      let given = ImageNormalisation(mean: [0.5], std: [0.25])
      let (train, test) = try NPZDataset.load("\(dir)/d.npz", classes: 12, normalisation: given)
      #expect(test.labels == labels.map(Int32.init) && train.classes == 12)
      #expect(train.normalisation == given)
    }
  }

  @Test(arguments: [
    ("missing array", "has no array y_test"),
    ("float64 images", "has dtype <f8; images must be uint8 or float32"),
    ("float labels", "labels must be integers"),
    ("label out of range", "y_train[3] = 12 is outside 0…9"),
    ("too few labels", "needs one label per image"),
    ("big-endian labels", "has dtype >i8; labels must be integers"),
    ("truncated", "a truncated or non-npz file"),
    ("not an npz", "a truncated or non-npz file"),
    ("damaged member", "fails its CRC-32 check"),
  ])
  func badFilesAreNamedInOneLine(kind: String, expected: String) throws {
    try withTemporaryDirectory { dir in
      let path = "\(dir)/d.npz"
      switch kind {
      case "missing array": try writeNPZ(members(replacing: "y_test.npy", with: nil), to: path)
      case "float64 images":
        try writeNPZ(members(replacing: "x_train.npy", with: NPYArray.encode(descr: "<f8", shape: [40, 8, 8], data: [UInt8](repeating: 0, count: 40 * 64 * 8))), to: path)
      case "float labels": try writeNPZ(members(replacing: "y_test.npy", with: NPYArray.encode(shape: [10], floats: [Float](repeating: 1, count: 10))), to: path)
      case "label out of range":
        try writeNPZ(members(replacing: "y_train.npy", with: NPYArray.encode(shape: [40], integers: (0..<40).map { $0 == 3 ? 12 : Int64($0 % 10) })), to: path)
      case "too few labels": try writeNPZ(members(replacing: "y_train.npy", with: NPYArray.encode(shape: [39], integers: [Int64](repeating: 1, count: 39))), to: path)
      case "big-endian labels": try writeNPZ(members(replacing: "y_test.npy", with: NPYArray.encode(descr: ">i8", shape: [10], data: [UInt8](repeating: 0, count: 80))), to: path)
      case "truncated":
        let bytes = try ZipArchive.encode(members(replacing: "", with: nil), compress: true)
        try Data(bytes.prefix(bytes.count / 2)).write(to: URL(fileURLWithPath: path))
      case "not an npz": try "x_train,y_train\n1,2\n".write(toFile: path, atomically: true, encoding: .utf8)
      default:
        var bytes = try ZipArchive.encode(members(replacing: "", with: nil), compress: false)
        bytes[200] ^= 0xFF  // inside x_train's stored pixels
        try Data(bytes).write(to: URL(fileURLWithPath: path))
      }
      let classes = kind == "label out of range" ? 10 : nil
      #expect {
        try NPZDataset.load(path, classes: classes)
      } throws: { error in
        let text = "\(error)"
        return text.contains(expected) && text.contains(path) && !text.contains("\n")
      }
    }
  }

  /// What `stagewise predict` writes is what it reads: arrays survive the archive both ways.
  @Test func encodedArraysReadBack() throws {
    let floats: [Float] = [1.5, -2, 0.25, .pi, 7, 8]
    let archive = try ZipArchive(
      ZipArchive.encode([("p.npy", NPYArray.encode(shape: [2, 3], floats: floats)), ("c.npy", NPYArray.encode(shape: [2], integers: [-3, 9]))], compress: true),
      name: "x.npz")
    let p = try NPYArray(parsing: archive.read(archive.member(named: "p.npy")!), name: "p")
    let c = try NPYArray(parsing: archive.read(archive.member(named: "c.npy")!), name: "c")
    #expect(p.shape == [2, 3] && p.floats == floats)
    #expect(c.integers == [-3, 9])
  }
}
