import NN

/// A small learnable image set for tests and smoke runs: each class is a fixed random
/// prototype image; samples are prototypes plus noise, quantised to bytes like real images.
public enum SyntheticDataset {
  public static func make(
    count: Int, classes: Int = 10, side: Int = 8, noise: Double = 0.35, seed: UInt64,
    prototypeSeed: UInt64 = 7
  ) -> Dataset {
    let size = side * side
    var protoRNG = SeededGenerator(seed: prototypeSeed)
    let prototypes = (0..<classes).map { _ in (0..<size).map { _ in protoRNG.nextUnit() } }
    var rng = SeededGenerator(seed: seed)
    var raw = [UInt8](repeating: 0, count: count * size)
    var labels = [Int32](repeating: 0, count: count)
    for i in 0..<count {
      let label = i % classes
      labels[i] = Int32(label)
      for j in 0..<size {
        let v = prototypes[label][j] + noise * rng.nextNormal()
        raw[i * size + j] = UInt8(max(0, min(255, (v * 255).rounded())))
      }
    }
    return Dataset(
      sampleShape: [side, side, 1], classes: classes, raw: .bytes(raw), labels: labels,
      normalisation: ImageNormalisation(mean: [0.5], std: [0.3]))
  }
}
