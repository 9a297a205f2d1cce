import Foundation
import NN

extension Stage {
  /// Every parameter by name, and each optimizer-state buffer as `optimizer.<slot>`.
  public func checkpointEntries() -> [Safetensors.Entry] {
    var entries = store.layout.specs.map { spec in
      Safetensors.Entry(
        name: spec.name, shape: spec.shape,
        values: Array(store.values[spec.offset..<(spec.offset + spec.count)]))
    }
    for (slot, buffer) in store.slots.sorted(by: { $0.key < $1.key }) {
      entries.append(Safetensors.Entry(name: "optimizer.\(slot)", shape: [store.count], values: Array(buffer.prefix(store.count))))
    }
    return entries
  }

  /// Writes this stage's weights and optimizer state with `metadata` (stage, epoch, …).
  public func save(to path: String, metadata: [String: String]) throws {
    var meta = metadata
    meta["stage"] = "\(index)"
    meta["optimizer.steps"] = "\(optimizer.stepCount)"
    try Safetensors.write(checkpointEntries(), metadata: meta, to: path)
  }
}

/// Why a checkpoint cannot be restored, and what to do.
public struct CheckpointError: Error, CustomStringConvertible, Sendable {
  public var path: String
  public var reason: String
  public var description: String { "\(path): \(reason)" }
}

extension Stage {
  /// Restores weights and optimizer state from a checkpoint written by `save`. Every tensor
  /// must be there with its shape; a checkpoint of another stage or of another model (when
  /// `config` is given: `RunConfig.mismatch`) is refused before anything is changed. Returns
  /// the checkpoint's metadata.
  @discardableResult
  public func restore(from path: String, config: RunConfig? = nil) throws -> [String: String] {
    let (tensors, metadata) = try Safetensors.read(path)
    func fail(_ reason: String) -> CheckpointError { CheckpointError(path: path, reason: reason) }
    if let stored = metadata["stage"], stored != "\(index)" {
      throw fail("holds stage \(stored), not stage \(index)")
    }
    if let reason = config?.mismatch(checkpoint: metadata) { throw fail(reason) }
    var values = [Float](repeating: 0, count: store.count)
    for spec in store.layout.specs {
      guard let tensor = tensors[spec.name] else { throw fail("has no tensor \(spec.name)") }
      guard tensor.shape == spec.shape else { throw fail("\(spec.name) has shape \(tensor.shape), this stage needs \(spec.shape)") }
      values.replaceSubrange(spec.offset..<(spec.offset + spec.count), with: tensor.storage)
    }
    var slots: [(String, [Float])] = []
    for (name, tensor) in tensors where name.hasPrefix("optimizer.") {
      guard tensor.count == store.count else { throw fail("\(name) has \(tensor.count) values, the stage \(store.count)") }
      slots.append((String(name.dropFirst("optimizer.".count)), tensor.storage))
    }
    store.setValues(values)
    for (slot, state) in slots { _ = store.slot(slot).update(fromContentsOf: state) }
    if let steps = metadata["optimizer.steps"].flatMap(Int.init) { optimizer.stepCount = steps }
    return metadata
  }
}
