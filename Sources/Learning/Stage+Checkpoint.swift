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
