import Foundation

/// Images to predict on, from a `.npy` of images or an `.npz` holding them (`x`, else
/// `x_test`, else its only array), with their labels when the archive has them (`y`, `y_test`).
public struct ImageArrays: Sendable {
  public var raw: RawImages
  /// [H, W, C] per image.
  public var sampleShape: [Int]
  public var labels: [Int32]?
  public var count: Int { raw.count / sampleShape.reduce(1, *) }

  public init(path: String) throws(DataError) {
    guard let contents = FileManager.default.contents(atPath: path) else {
      throw DataError(
        "cannot read \(path)",
        hint: "give a .npy of images (N×H×W or N×H×W×C) or an .npz holding one")
    }
    var labelArray: NPYArray?
    let images: NPYArray
    if path.hasSuffix(".npy") {
      images = try NPYArray(parsing: Array(contents), name: path)
    } else {
      let archive = try ZipArchive(Array(contents), name: path)
      let names = archive.arrayNames
      guard
        let name = ["x", "x_test"].first(where: names.contains)
          ?? (names.count == 1 ? names[0] : nil), let x = try archive.array(named: name)
      else {
        throw DataError(
          "\(path) holds \(names.joined(separator: ", ")); which are the images?",
          hint: "name them x (or x_test)")
      }
      images = x
      labelArray = try ["y", "y_test"].first(where: names.contains).flatMap { y throws(DataError) in
        try archive.array(named: y)
      }
    }
    sampleShape = try NPZDataset.imageShape(images, path)
    raw = try NPZDataset.images(images, path)
    labels = try labelArray.map { y throws(DataError) in
      try NPZDataset.labels(y, count: images.shape[0], "\(path): labels")
    }
  }
}
