import Foundation
import Datasets

/// The arrays of a small learnable image set in Keras' npz layout (x_train, y_train, x_test,
/// y_test), made from `SyntheticDataset`: grey uint8 N×8×8, or colour float32 N×8×8×3 (the
/// grey image, its negative and half of it as channels); labels int64 N.
public func syntheticNPZMembers(colour: Bool, train: Int = 400, test: Int = 100) -> [(name: String, content: [UInt8])] {
  func arrays(_ data: Dataset, _ split: String) -> [(name: String, content: [UInt8])] {
    guard case .bytes(let bytes) = data.raw else { preconditionFailure("synthetic images are bytes") }
    let side = data.sampleShape[0]
    let images: [UInt8]
    if colour {
      let floats = bytes.flatMap { b -> [Float] in
        let v = Float(b) / 255
        return [v, 1 - v, v / 2]
      }
      images = NPYArray.encode(shape: [data.count, side, side, 3], floats: floats)
    } else {
      images = NPYArray.encode(descr: "|u1", shape: [data.count, side, side], data: bytes)
    }
    return [("x_\(split).npy", images), ("y_\(split).npy", NPYArray.encode(shape: [data.count], integers: data.labels.map(Int64.init)))]
  }
  return arrays(SyntheticDataset.make(count: train, seed: 101), "train") + arrays(SyntheticDataset.make(count: test, seed: 202), "test")
}

/// Writes `members` as an .npz (deflated when `compress`) at `path`.
public func writeNPZ(_ members: [(name: String, content: [UInt8])], to path: String, compress: Bool = false) throws {
  let bytes = try ZipArchive.encode(members, compress: compress)
  try Data(bytes).write(to: URL(fileURLWithPath: path))
}
