import Foundation

/// How the learning rate changes over training.
public enum ScheduleKind: String, Sendable, Codable, CaseIterable {
  case constant
  /// Multiplied by `gamma` every `stepEpochs` epochs.
  case step
  /// Cosine decay from the base rate to `minimum` over the run.
  case cosine
}

/// A learning-rate schedule with an optional linear warm-up, read per optimizer step.
public struct LearningRateSchedule: Sendable, Equatable {
  public var kind: ScheduleKind = .cosine
  public var stepEpochs: Int = 15
  public var gamma: Float = 0.2
  public var minimum: Float = 0
  public var warmupEpochs: Double = 0
  public init() {}

  /// The rate for update number `step` (0-based) of a run of `totalEpochs` epochs of
  /// `stepsPerEpoch` updates, starting from `base`.
  public func rate(base: Float, step: Int, stepsPerEpoch: Int, totalEpochs: Int) -> Float {
    let perEpoch = Double(max(stepsPerEpoch, 1))
    let warmupSteps = warmupEpochs * perEpoch
    if Double(step) < warmupSteps {
      return base * Float(Double(step + 1) / warmupSteps)
    }
    let epoch = Double(step) / perEpoch
    switch kind {
    case .constant:
      return base
    case .step:
      return base * powf(gamma, Float(Int(epoch) / max(stepEpochs, 1)))
    case .cosine:
      let span = max(Double(totalEpochs) - warmupEpochs, 1e-9)
      let progress = min(max((epoch - warmupEpochs) / span, 0), 1)
      return minimum + (base - minimum) * Float((1 + cos(Double.pi * progress)) / 2)
    }
  }
}
