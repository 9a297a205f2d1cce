/// One named parameter tensor inside a `ParameterStore`.
public struct ParameterSpec: Sendable, Equatable {
  public var name: String
  public var shape: [Int]
  public var offset: Int
  /// False for state that lives beside the parameters (BatchNorm's running statistics):
  /// checkpointed with them, never stepped by an optimizer.
  public var trainable = true
  public var count: Int { shape.reduce(1, *) }
}

/// Where each parameter of a stage lives in its flat store; layers add their parameters
/// while the stage is built.
public struct ParameterLayout: Sendable, Equatable {
  public private(set) var specs: [ParameterSpec] = []
  public private(set) var count = 0

  public init() {}

  /// Reserves room for a parameter (or, not `trainable`, for state) and returns its offset.
  public mutating func add(_ name: String, shape: [Int], trainable: Bool = true) -> Int {
    let spec = ParameterSpec(name: name, shape: shape, offset: count, trainable: trainable)
    specs.append(spec)
    count += spec.count
    return spec.offset
  }
}

/// All of one stage's parameters, their gradients and the optimizer's state, each one flat
/// allocation (after llm.c): an optimizer step, a checkpoint and a weight transfer are each
/// one loop over contiguous memory.
///
/// It is a class because layers address it through raw pointers; it is confined to the
/// thread that trains its stage.
public final class ParameterStore {
  public let layout: ParameterLayout
  public let values: UnsafeMutableBufferPointer<Float>
  /// ∂L/∂θ, added into (+=) by every backward pass. After an optimizer step they are *stale*
  /// rather than zero: the next backward overwrites each tensor instead of adding to it (see
  /// `accumulationTarget`), which saves the optimizer a pass of writes and sgemm a pass of reads.
  public let gradients: UnsafeMutableBufferPointer<Float>
  /// Optimizer state, one flat buffer per name (`momentum`, `adam.m`, …).
  public private(set) var slots: [String: UnsafeMutableBufferPointer<Float>] = [:]
  /// Per parameter tensor (layout order): whether its gradient holds an earlier step's values.
  private var stale: [Bool]
  private let specIndex: [Int: Int]

  public init(layout: ParameterLayout) {
    self.layout = layout
    values = .allocate(capacity: max(layout.count, 1))
    gradients = .allocate(capacity: max(layout.count, 1))
    values.initialize(repeating: 0)
    gradients.initialize(repeating: 0)
    stale = [Bool](repeating: false, count: layout.specs.count)
    specIndex = Dictionary(uniqueKeysWithValues: layout.specs.enumerated().map { ($1.offset, $0) })
  }

  deinit {
    values.deallocate()
    gradients.deallocate()
    for buffer in slots.values { buffer.deallocate() }
  }

  public var count: Int { layout.count }

  /// The optimizer-state buffer called `name`, zero-filled the first time it is asked for.
  public func slot(_ name: String) -> UnsafeMutableBufferPointer<Float> {
    if let buffer = slots[name] { return buffer }
    let buffer = UnsafeMutableBufferPointer<Float>.allocate(capacity: max(count, 1))
    buffer.initialize(repeating: 0)
    slots[name] = buffer
    return buffer
  }

  /// Every gradient zero, and added into from here on.
  public func zeroGradients() {
    gradients.update(repeating: 0)
    stale = stale.map { _ in false }
  }

  /// Where a backward pass accumulates the gradient of the parameter tensor at `offset`, and
  /// whether it must overwrite it (the first write since the optimizer step: the values there
  /// are stale) rather than add to it.
  public func accumulationTarget(at offset: Int) -> (
    gradient: UnsafeMutablePointer<Float>, overwrite: Bool
  ) {
    guard let index = specIndex[offset] else {
      preconditionFailure("ParameterStore: no parameter starts at \(offset)")
    }
    defer { stale[index] = false }
    return (gradient(at: offset), stale[index])
  }

  /// The gradient of the `count` values at `offset`, ready to be added into: zeroed first when
  /// it is stale. (sgemm takes `accumulationTarget` instead and overwrites with beta 0.)
  public func gradientToAdd(at offset: Int, count: Int) -> UnsafeMutablePointer<Float> {
    let (gradient, stale) = accumulationTarget(at: offset)
    if stale { gradient.update(repeating: 0, count: count) }
    return gradient
  }

  /// Makes every stale gradient zero (a parameter no backward pass reached this step, such as
  /// an e2e inner stage's unused head): what the optimizer reads is then exactly ∂L/∂θ.
  public func clearStaleGradients() {
    for (index, spec) in layout.specs.enumerated() where stale[index] {
      gradient(at: spec.offset).update(repeating: 0, count: spec.count)
      stale[index] = false
    }
  }

  /// Marks every gradient stale: the optimizer has consumed them.
  func markGradientsStale() { stale = stale.map { _ in true } }

  public func value(at offset: Int) -> UnsafeMutablePointer<Float> { values.baseAddress! + offset }
  public func gradient(at offset: Int) -> UnsafeMutablePointer<Float> {
    gradients.baseAddress! + offset
  }

  /// The values as one array (for checkpoints and comparisons).
  public var valueArray: [Float] { Array(values.prefix(count)) }

  /// Replaces every value; `newValues` must have exactly `count` elements.
  public func setValues(_ newValues: [Float]) {
    precondition(newValues.count == count, "ParameterStore: expected \(count) values")
    _ = values.update(fromContentsOf: newValues)
  }
}
