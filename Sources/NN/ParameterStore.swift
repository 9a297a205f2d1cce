/// One named parameter tensor inside a `ParameterStore`.
public struct ParameterSpec: Sendable, Equatable {
  public var name: String
  public var shape: [Int]
  public var offset: Int
  public var count: Int { shape.reduce(1, *) }
}

/// Where each parameter of a stage lives in its flat store; layers add their parameters
/// while the stage is built.
public struct ParameterLayout: Sendable, Equatable {
  public private(set) var specs: [ParameterSpec] = []
  public private(set) var count = 0

  public init() {}

  /// Reserves room for a parameter and returns its offset.
  public mutating func add(_ name: String, shape: [Int]) -> Int {
    let spec = ParameterSpec(name: name, shape: shape, offset: count)
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
  public let gradients: UnsafeMutableBufferPointer<Float>
  /// Optimizer state, one flat buffer per name (`momentum`, `adam.m`, …).
  public private(set) var slots: [String: UnsafeMutableBufferPointer<Float>] = [:]

  public init(layout: ParameterLayout) {
    self.layout = layout
    values = .allocate(capacity: max(layout.count, 1))
    gradients = .allocate(capacity: max(layout.count, 1))
    values.initialize(repeating: 0)
    gradients.initialize(repeating: 0)
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

  public func zeroGradients() { gradients.update(repeating: 0) }

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
