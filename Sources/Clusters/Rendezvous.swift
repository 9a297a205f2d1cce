import Foundation

/// Where a worker finds its scheduler and which stage it asks for, launcher-agnostic:
/// flags first, then `STAGEWISE_SCHEDULER` / `STAGEWISE_STAGE`, then Slurm (the scheduler on
/// the first node of `SLURM_JOB_NODELIST` at `STAGEWISE_PORT`; `SLURM_PROCID`, rank 0 being
/// the scheduler, so stage = rank − 1) or Kubernetes (`JOB_COMPLETION_INDEX`, the stage).
/// With stage replicas those two numbers are worker slots, not stages: `STAGEWISE_SLOT_STAGES`
/// ("0,1,1,2": `stagewise render slot-stages`) gives each slot's stage.
public struct Rendezvous: Sendable, Equatable {
  public var scheduler: String
  public var stage: Int?

  public static func resolve(
    scheduler flag: String?, stage stageFlag: Int?, environment: [String: String]
  )
    throws(ClusterError) -> Rendezvous
  {
    let slurm = environment["SLURM_JOB_NODELIST"].flatMap(firstHost(ofNodeList:)).flatMap { host in
      environment["STAGEWISE_PORT"].map { "tcp://\(host):\($0)" }
    }
    guard let scheduler = flag ?? environment["STAGEWISE_SCHEDULER"] ?? slurm, !scheduler.isEmpty
    else {
      throw ClusterError(
        "no scheduler address: pass --scheduler tcp://HOST:PORT or set STAGEWISE_SCHEDULER (under "
          + "Slurm, STAGEWISE_PORT: the scheduler runs on the allocation's first node)"
      )
    }
    guard scheduler.hasPrefix("tcp://") || scheduler.hasPrefix("ipc://") else {
      throw ClusterError("scheduler address \(scheduler) must look like tcp://HOST:PORT")
    }
    if let stageFlag { return Rendezvous(scheduler: scheduler, stage: stageFlag) }
    func integer(_ name: String) throws(ClusterError) -> Int? {
      guard let text = environment[name] else { return nil }
      guard let value = Int(text), value >= 0 else {
        throw ClusterError("\(name)=\(text) is not a stage number")
      }
      return value
    }
    if let stage = try integer("STAGEWISE_STAGE") {
      return Rendezvous(scheduler: scheduler, stage: stage)
    }
    if let rank = try integer("SLURM_PROCID") {
      guard rank >= 1 else {
        throw ClusterError("SLURM_PROCID 0 is the scheduler's rank; workers are ranks 1…K")
      }
      return Rendezvous(scheduler: scheduler, stage: try stage(ofSlot: rank - 1, environment))
    }
    if let index = try integer("JOB_COMPLETION_INDEX") {
      return Rendezvous(scheduler: scheduler, stage: try stage(ofSlot: index, environment))
    }
    return Rendezvous(scheduler: scheduler, stage: nil)
  }

  /// The stage of worker slot `slot`: itself, or its entry in `STAGEWISE_SLOT_STAGES`.
  static func stage(ofSlot slot: Int, _ environment: [String: String]) throws(ClusterError)
    -> Int
  {
    guard let list = environment["STAGEWISE_SLOT_STAGES"] else { return slot }
    let stages = list.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
    guard !stages.isEmpty, stages.allSatisfy({ ($0 ?? -1) >= 0 }) else {
      throw ClusterError(
        "STAGEWISE_SLOT_STAGES=\(list) is not a comma-separated list of stage numbers (write it "
          + "with `stagewise render slot-stages --config C`)")
    }
    guard stages.indices.contains(slot) else {
      throw ClusterError(
        "worker slot \(slot) is past STAGEWISE_SLOT_STAGES=\(list) (\(stages.count) slots): "
          + "start one worker per slot")
    }
    return stages[slot]!
  }

  /// The first host of a Slurm node list: `node[03-05,9],gpu1` → `node03`.
  public static func firstHost(ofNodeList list: String) -> String? {
    var depth = 0
    let entry = list.prefix { character in
      if character == "[" { depth += 1 }
      if character == "]" { depth -= 1 }
      return !(character == "," && depth == 0)
    }
    guard let open = entry.firstIndex(of: "[") else { return entry.isEmpty ? nil : String(entry) }
    let ranges = entry[entry.index(after: open)...].prefix { $0 != "]" }
    guard let first = ranges.split(separator: ",").first?.split(separator: "-").first else {
      return nil
    }
    return String(entry[..<open]) + first
  }
}
