import Foundation

/// A data set from a NumPy `.npz` archive in the layout Keras uses for its bundled sets: the
/// arrays `x_train`, `y_train`, `x_test`, `y_test`; images N×H×W (grey) or N×H×W×C, `uint8`
/// (read as byte / 255) or `float32`; integer labels N (or N×1). Every array is checked, and a
/// bad one named in one line.
public enum NPZDataset {
  public static let arrays = ["x_train", "y_train", "x_test", "y_test"]

  /// Loads both splits from `path`. `classes` nil: one more than the largest label; `normalisation`
  /// nil: each channel's mean and standard deviation over the training images.
  public static func load(
    _ path: String, classes: Int? = nil, normalisation: ImageNormalisation? = nil
  ) throws(DataError)
    -> (train: Dataset, test: Dataset)
  {
    guard let contents = FileManager.default.contents(atPath: path) else {
      throw DataError(
        "cannot read \(path)",
        hint:
          "set data.path to an .npz file (numpy.savez(path, x_train=…, y_train=…, x_test=…, "
          + "y_test=…))"
      )
    }
    let archive = try ZipArchive(Array(contents), name: path)
    var found: [String: NPYArray] = [:]
    for name in arrays {
      guard let array = try archive.array(named: name) else {
        let held = archive.arrayNames.joined(separator: ", ")
        throw DataError(
          "\(path) has no array \(name) (it holds: \(held.isEmpty ? "nothing" : held))",
          hint: "save it as numpy.savez(path, x_train=…, y_train=…, x_test=…, y_test=…)")
      }
      found[name] = array
    }
    let (xTrain, xTest) = (found["x_train"]!, found["x_test"]!)
    let sampleShape = try imageShape(xTrain, "\(path): x_train")
    guard try imageShape(xTest, "\(path): x_test") == sampleShape, xTest.element == xTrain.element
    else {
      throw DataError(
        "\(path): x_test is \(xTest.descr) \(xTest.shape), x_train \(xTrain.descr) "
          + "\(xTrain.shape): their images must match",
        hint: "write both splits with the same image size, channels and dtype")
    }
    let yTrain = try labels(found["y_train"]!, count: xTrain.shape[0], "\(path): y_train")
    let yTest = try labels(found["y_test"]!, count: xTest.shape[0], "\(path): y_test")
    let classCount = try checkClasses(classes, train: yTrain, test: yTest, path: path)
    let (rawTrain, rawTest) = (
      try images(xTrain, "\(path): x_train"), try images(xTest, "\(path): x_test")
    )
    let normalisation = normalisation ?? .measured(rawTrain, channels: sampleShape[2])
    guard [1, sampleShape[2]].contains(normalisation.mean.count) else {
      throw DataError(
        "data.mean and data.std give \(normalisation.mean.count) values; \(path) has "
          + "\(sampleShape[2]) channels",
        hint: "give one value, or one per channel")
    }
    return (
      Dataset(
        sampleShape: sampleShape, classes: classCount, raw: rawTrain, labels: yTrain,
        normalisation: normalisation),
      Dataset(
        sampleShape: sampleShape, classes: classCount, raw: rawTest, labels: yTest,
        normalisation: normalisation)
    )
  }

  /// [H, W, C] of N×H×W or N×H×W×C images of uint8 or float32.
  static func imageShape(_ x: NPYArray, _ name: String) throws(DataError) -> [Int] {
    guard x.element == .uint8 || x.element == .float32 else {
      throw DataError(
        "\(name) has dtype \(x.descr); images must be uint8 or float32",
        hint: "convert with x.astype('float32') (or 'uint8' for 0…255 pixels)")
    }
    guard x.shape.count == 3 || x.shape.count == 4, x.shape.allSatisfy({ $0 > 0 }) else {
      throw DataError(
        "\(name) has shape \(x.shape); images must be N×H×W (grey) or N×H×W×C, none of them 0",
        hint: "reshape it; channels go last")
    }
    return x.shape.count == 3 ? Array(x.shape[1...]) + [1] : Array(x.shape[1...])
  }

  static func images(_ x: NPYArray, _ name: String) throws(DataError) -> RawImages {
    guard x.element == .float32 else { return .bytes(x.bytes) }
    let floats = x.floats
    if let bad = floats.firstIndex(where: { !$0.isFinite }) {
      throw DataError(
        "\(name) holds \(floats[bad]) at flat index \(bad)", hint: "images must be finite numbers")
    }
    return .floats(floats)
  }

  /// Integer labels, N or N×1, not negative.
  static func labels(_ y: NPYArray, count: Int, _ name: String) throws(DataError) -> [Int32] {
    guard let values = y.integers else {
      throw DataError(
        "\(name) has dtype \(y.descr); labels must be integers",
        hint: "convert with y.astype('int64')")
    }
    guard y.shape == [count] || y.shape == [count, 1] else {
      throw DataError(
        "\(name) has shape \(y.shape); it needs one label per image: [\(count)]",
        hint: "one integer class per image, in the images' order")
    }
    if let bad = values.firstIndex(where: { $0 < 0 || $0 > Int64(Int32.max) }) {
      throw DataError(
        "\(name)[\(bad)] = \(values[bad]) is not a class index", hint: "labels are classes 0, 1, …")
    }
    return values.map { Int32($0) }
  }

  static func checkClasses(_ given: Int?, train: [Int32], test: [Int32], path: String)
    throws(DataError) -> Int
  {
    let largest = Int(max(train.max() ?? 0, test.max() ?? 0))
    let classes = given ?? largest + 1
    guard classes >= 2 else {
      throw DataError("\(path): every label is 0: a classifier needs two classes or more")
    }
    for (name, labels) in [("y_train", train), ("y_test", test)] {
      if let bad = labels.firstIndex(where: { Int($0) >= classes }) {
        throw DataError(
          "\(path): \(name)[\(bad)] = \(labels[bad]) is outside 0…\(classes - 1) (data.classes: "
            + "\(classes))",
          hint: "raise data.classes or fix the label")
      }
    }
    return classes
  }
}
