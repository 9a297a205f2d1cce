import Foundation
import NN
import TestSupport
import Testing

@testable import Datasets

/// Writes a tiny Fashion-MNIST-shaped split: `count` images of side×side and their labels.
func writeSplit(_ prefix: String, count: Int, side: Int, in directory: String) throws {
  let pixels = (0..<(count * side * side)).map { UInt8($0 % 256) }
  let labels = (0..<count).map { UInt8($0 % 10) }
  try Gzip.write(IDXFile(dimensions: [count, side, side], bytes: pixels).encoded, to: "\(directory)/\(prefix)-images-idx3-ubyte.gz")
  try Gzip.write(IDXFile(dimensions: [count], bytes: labels).encoded, to: "\(directory)/\(prefix)-labels-idx1-ubyte.gz")
}

@Suite("IDX files and Fashion-MNIST loading")
struct IDXTests {
  @Test func roundTripThroughGzip() throws {
    try withTemporaryDirectory { dir in
      try writeSplit("train", count: 12, side: 4, in: dir)
      try writeSplit("t10k", count: 5, side: 4, in: dir)
      let train = try FashionMNIST.load(.train, from: dir)
      let test = try FashionMNIST.load(.test, from: dir)
      #expect(train.count == 12 && test.count == 5)
      #expect(train.sampleShape == [4, 4, 1])
      #expect(train.labels[11] == 1)
      #expect(train.raw == .bytes((0..<(12 * 16)).map { UInt8($0 % 256) }))
      // normalised with Fashion-MNIST's mean and std
      #expect(abs(train.pixels[17] - (17 / 255 - 0.2860) / 0.3530) < 1e-6)
    }
  }

  @Test func wrongMagicNumberIsNamed() throws {
    var bytes = IDXFile(dimensions: [2, 2, 2], bytes: [UInt8](repeating: 0, count: 8)).encoded
    bytes[2] = 0x0D  // float data, not unsigned bytes
    #expect {
      try IDXFile(parsing: bytes, name: "x.idx", expectedRank: 3)
    } throws: { error in
      "\(error)".contains("wrong IDX magic number") && "\(error)".contains("x.idx")
    }
  }

  @Test func truncatedFileIsNamed() throws {
    let bytes = IDXFile(dimensions: [3, 2, 2], bytes: [UInt8](repeating: 1, count: 12)).encoded.dropLast(5)
    #expect {
      try IDXFile(parsing: Array(bytes), name: "t.idx", expectedRank: 3)
    } throws: { error in
      "\(error)".contains("truncated")
    }
  }

  @Test func truncatedGzipStreamIsAnError() throws {
    try withTemporaryDirectory { dir in
      try writeSplit("train", count: 50, side: 8, in: dir)
      let path = "\(dir)/train-images-idx3-ubyte.gz"
      let data = try Data(contentsOf: URL(fileURLWithPath: path))
      try data.prefix(data.count / 2).write(to: URL(fileURLWithPath: path))
      #expect(throws: DataError.self) { try FashionMNIST.load(.train, from: dir) }
    }
  }

  @Test func missingDataSetNamesTheFix() throws {
    try withTemporaryDirectory { dir in
      #expect {
        try FashionMNIST.load(.train, from: dir)
      } throws: { error in
        "\(error)".contains("Fashion-MNIST not found") && "\(error)".contains("data.path")
      }
    }
    let error = #expect(throws: DataError.self) {
      try FashionMNIST.locate("no-such-file", in: FashionMNIST.defaultDirectory)
    }
    #expect(error?.hint.contains("apt-get install dataset-fashion-mnist") == true)
  }

  @Test func labelsOutOfRangeAreRejected() throws {
    try withTemporaryDirectory { dir in
      try writeSplit("train", count: 3, side: 2, in: dir)
      try Gzip.write(IDXFile(dimensions: [3], bytes: [1, 12, 3]).encoded, to: "\(dir)/train-labels-idx1-ubyte.gz")
      #expect(throws: DataError.self) { try FashionMNIST.load(.train, from: dir) }
    }
  }
}

@Suite("Batches")
struct BatchTests {
  @Test func everySampleOnceWithAPartialLastBatch() {
    let order = BatchOrder(count: 10, batchSize: 4, shuffle: true, seed: 3)
    let batches = order.batches(epoch: 0)
    #expect(batches.map(\.count) == [4, 4, 2])
    #expect(batches.flatMap { $0 }.sorted() == Array(0..<10))
  }

  @Test func dropLastDropsThePartialBatch() {
    let order = BatchOrder(count: 10, batchSize: 4, shuffle: false, dropLast: true, seed: 0)
    #expect(order.batches(epoch: 0).map(Array.init) == [[0, 1, 2, 3], [4, 5, 6, 7]])
  }

  @Test func shuffleIsSeededPerEpoch() {
    let a = BatchOrder(count: 100, batchSize: 10, shuffle: true, seed: 7)
    let b = BatchOrder(count: 100, batchSize: 10, shuffle: true, seed: 7)
    #expect(a.batches(epoch: 2).map(Array.init) == b.batches(epoch: 2).map(Array.init))
    #expect(a.batches(epoch: 2).map(Array.init) != a.batches(epoch: 3).map(Array.init))
  }

  @Test func batchGathersImagesAndLabels() {
    let data = SyntheticDataset.make(count: 20, classes: 4, side: 4, seed: 1)
    let batch = data.batch([3, 7])
    #expect(batch.images.shape == [2, 4, 4, 1])
    #expect(batch.labels == [3, 3])
    #expect(Array(batch.images.storage[16..<32]) == Array(data.pixels[(7 * 16)..<(8 * 16)]))
  }

  @Test func syntheticDataIsDeterministic() {
    let a = SyntheticDataset.make(count: 30, seed: 5)
    let b = SyntheticDataset.make(count: 30, seed: 5)
    #expect(a.raw == b.raw && a.labels == b.labels)
  }
}

@Suite("Augmentation")
struct AugmentationTests {
  /// A 2×3 image [[1, 2, 3], [4, 5, 6]] moved by hand.
  @Test func movesShiftFillAndMirror() {
    let image: ArraySlice<UInt8> = [1, 2, 3, 4, 5, 6]
    #expect(Augmentation.move(image, shape: [2, 3, 1], dy: 0, dx: 1, mirror: false) == [2, 3, 0, 5, 6, 0])
    #expect(Augmentation.move(image, shape: [2, 3, 1], dy: -1, dx: 0, mirror: true) == [0, 0, 0, 3, 2, 1])
    #expect(Augmentation.move(image, shape: [2, 3, 1], dy: 0, dx: 0, mirror: false) == Array(image))
    let twoChannels: ArraySlice<UInt8> = [1, 10, 2, 20]  // 1×2×2
    #expect(Augmentation.move(twoChannels, shape: [1, 2, 2], dy: 0, dx: 0, mirror: true) == [2, 20, 1, 10])
  }

  /// Draws stay within ±padding, cover it, mirror about half the time, depend only on seed,
  /// epoch and index; a batch is moved sample by sample as drawn.
  @Test func drawsAreSeededPerEpochAndSample() {
    let augmentation = Augmentation(padding: 2, flip: true, seed: 5)
    let draws = (0..<2000).map { augmentation.draw(index: $0, epoch: 3) }
    #expect(Set(draws.map(\.dy)) == Set(-2...2) && Set(draws.map(\.dx)) == Set(-2...2))
    #expect(abs(Double(draws.filter(\.mirror).count) / 2000 - 0.5) < 0.05)
    #expect(augmentation.draw(index: 7, epoch: 3) == augmentation.draw(index: 7, epoch: 3))
    #expect((0..<50).contains { augmentation.draw(index: $0, epoch: 3) != augmentation.draw(index: $0, epoch: 4) })
    #expect(!Augmentation(padding: 2, flip: false, seed: 5).draw(index: 1, epoch: 0).mirror)
    var raw: [UInt8] = Array(1...12)  // two 2×3×1 images
    augmentation.apply(&raw, sampleShape: [2, 3, 1], indices: [8, 9], epoch: 1)
    for (row, index) in [8, 9].enumerated() {
      let d = augmentation.draw(index: index, epoch: 1)
      let original = ArraySlice<UInt8>((1...12).map(UInt8.init)[(row * 6)..<(row * 6 + 6)])
      #expect(Array(raw[(row * 6)..<(row * 6 + 6)]) == Augmentation.move(original, shape: [2, 3, 1], dy: d.dy, dx: d.dx, mirror: d.mirror))
    }
  }

  /// A training batch is made from the moved raw bytes, then normalised: the two agree, and
  /// they differ from the unmoved batch; without augmentation it is the plain batch.
  @Test func trainingBatchesAreMovedRawThenNormalised() {
    let raw = (0..<(4 * 16)).map { UInt8(($0 * 37) % 251) }
    let normalisation = ImageNormalisation(mean: [0.5], std: [0.25])
    let data = Dataset(sampleShape: [4, 4, 1], classes: 2, raw: .bytes(raw), labels: [0, 1, 1, 0], normalisation: normalisation)
    let augmentation = Augmentation(padding: 1, flip: true, seed: 2)
    let (moved, movedRaw) = data.trainingBatch([1, 3], epoch: 0, augmentation: augmentation)
    #expect(moved.labels == [1, 0])
    #expect(moved.images.storage == normalisation.apply(movedRaw()))
    #expect(movedRaw() != data.rawBatch([1, 3]))
    let (plain, plainRaw) = data.trainingBatch([1, 3], epoch: 0, augmentation: nil)
    #expect(plain.images.storage == data.batch([1, 3]).images.storage && plainRaw() == data.rawBatch([1, 3]))
  }
}
