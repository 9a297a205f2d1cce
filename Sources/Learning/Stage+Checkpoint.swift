import Foundation
import NN

extension Stage {
  /// The parameter stores a checkpoint holds, each with the prefix of its optimizer state:
  /// the stage's, and a DNI synthesiser's (its parameter names start `synthesiser.` already).
  var checkpointedStores: [(store: ParameterStore, optimizerPrefix: String)] {
    [(store, "optimizer.")] + (synthesiser.map { [($0.store, "synthesiser.optimizer.")] } ?? [])
  }

  /// Every parameter by name, and each optimizer-state buffer as `optimizer.<slot>`
  /// (`synthesiser.optimizer.<slot>` for a synthesiser's).
  public func checkpointEntries() -> [Safetensors.Entry] {
    checkpointedStores.flatMap { store, prefix in
      store.layout.specs.map { spec in
        Safetensors.Entry(
          name: spec.name, shape: spec.shape,
          values: Array(store.values[spec.offset..<(spec.offset + spec.count)]))
      }
        + store.slots.sorted(by: { $0.key < $1.key }).map { slot, buffer in
          Safetensors.Entry(
            name: prefix + slot, shape: [store.count], values: Array(buffer.prefix(store.count)))
        }
    }
  }

  /// Writes this stage's weights and optimizer state with `metadata` (stage, epoch, …).
  public func save(to path: String, metadata: [String: String]) throws {
    var meta = metadata
    meta["stage"] = "\(index)"
    meta["optimizer.steps"] = "\(optimizer.stepCount)"
    if let synthesiser {
      meta["synthesiser.optimizer.steps"] = "\(synthesiser.optimizer.stepCount)"
    }
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
    // Everything is read and checked before anything changes.
    var restored: [(ParameterStore, values: [Float], slots: [(String, [Float])])] = []
    for (store, prefix) in checkpointedStores {
      var values = [Float](repeating: 0, count: store.count)
      for spec in store.layout.specs {
        guard let tensor = tensors[spec.name] else { throw fail("has no tensor \(spec.name)") }
        guard tensor.shape == spec.shape else {
          throw fail("\(spec.name) has shape \(tensor.shape), this stage needs \(spec.shape)")
        }
        values.replaceSubrange(spec.offset..<(spec.offset + spec.count), with: tensor.storage)
      }
      var slots: [(String, [Float])] = []
      for (name, tensor) in tensors where name.hasPrefix(prefix) {
        guard tensor.count == store.count else {
          throw fail("\(name) has \(tensor.count) values, its store \(store.count)")
        }
        slots.append((String(name.dropFirst(prefix.count)), tensor.storage))
      }
      restored.append((store, values, slots))
    }
    for (store, values, slots) in restored {
      store.setValues(values)
      for (slot, state) in slots { _ = store.slot(slot).update(fromContentsOf: state) }
    }
    if let steps = metadata["optimizer.steps"].flatMap(Int.init) { optimizer.stepCount = steps }
    if let steps = metadata["synthesiser.optimizer.steps"].flatMap(Int.init) {
      synthesiser?.optimizer.stepCount = steps
    }
    return metadata
  }
}
