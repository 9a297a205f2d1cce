import Foundation

/// Fashion-MNIST from the IDX files of Debian's `dataset-fashion-mnist`.
public enum FashionMNIST {
  public static let defaultDirectory = "/usr/share/datasets/fashion-mnist"
  /// The training set's pixel mean and standard deviation (bytes / 255).
  public static let normalisation = ImageNormalisation(mean: [0.2860], std: [0.3530])

  public enum Split: String, Sendable { case train, test }

  /// Loads one split from `directory` (`train-…` or `t10k-…`, gzipped or not).
  public static func load(
    _ split: Split, from directory: String = defaultDirectory,
    normalisation: ImageNormalisation = normalisation
  ) throws(DataError)
    -> Dataset
  {
    let prefix = split == .train ? "train" : "t10k"
    let imagesPath = try locate("\(prefix)-images-idx3-ubyte", in: directory)
    let labelsPath = try locate("\(prefix)-labels-idx1-ubyte", in: directory)
    let images = try IDXFile(parsing: Gzip.read(imagesPath), name: imagesPath, expectedRank: 3)
    let labels = try IDXFile(parsing: Gzip.read(labelsPath), name: labelsPath, expectedRank: 1)
    guard images.dimensions[0] == labels.dimensions[0] else {
      throw DataError(
        "\(imagesPath) holds \(images.dimensions[0]) images but \(labelsPath) "
          + "\(labels.dimensions[0]) labels"
      )
    }
    if let bad = labels.bytes.first(where: { $0 > 9 }) {
      throw DataError("\(labelsPath): label \(bad) is outside 0…9")
    }
    return Dataset(
      sampleShape: [images.dimensions[1], images.dimensions[2], 1], classes: 10,
      raw: .bytes(images.bytes), labels: labels.bytes.map { Int32($0) },
      normalisation: normalisation)
  }

  /// The IDX files `load` needs that `directory` lacks (empty when the data set is there).
  public static func missingFiles(in directory: String = defaultDirectory) -> [String] {
    [
      "train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
      "t10k-labels-idx1-ubyte",
    ].filter { base in
      (try? locate(base, in: directory)) == nil
    }
  }

  static func locate(_ base: String, in directory: String) throws(DataError) -> String {
    for candidate in ["\(directory)/\(base).gz", "\(directory)/\(base)"]
    where FileManager.default.fileExists(atPath: candidate) {
      return candidate
    }
    let hint =
      directory == defaultDirectory
      ? "install it with `apt-get install dataset-fashion-mnist`"
      : "set data.path to the folder holding the Fashion-MNIST IDX files"
    throw DataError("Fashion-MNIST not found: no \(base)(.gz) in \(directory)", hint: hint)
  }
}
