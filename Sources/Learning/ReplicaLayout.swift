/// Where each stage's replicas sit in the list of a job's worker slots: stage 0's replicas
/// first, then stage 1's, and so on. With one replica per stage a slot is its stage.
public struct ReplicaLayout: Sendable, Equatable {
  /// Replicas per stage.
  public let counts: [Int]
  /// The first slot of each stage.
  let firsts: [Int]

  public init(counts: [Int]) {
    precondition(counts.allSatisfy { $0 >= 1 }, "ReplicaLayout: a stage without replicas")
    self.counts = counts
    firsts = counts.indices.map { counts[..<$0].reduce(0, +) }
  }

  /// The replicas `config.stages` asks for.
  public init(_ config: RunConfig) { self.init(counts: config.stages.map(\.replicas)) }

  public var stageCount: Int { counts.count }
  public var slotCount: Int { counts.reduce(0, +) }
  public var isReplicated: Bool { counts.contains { $0 > 1 } }

  public func slot(stage: Int, replica: Int) -> Int { firsts[stage] + replica }

  public func slots(ofStage stage: Int) -> Range<Int> {
    firsts[stage]..<(firsts[stage] + counts[stage])
  }

  /// The stage and replica of `slot`.
  public func place(ofSlot slot: Int) -> (stage: Int, replica: Int) {
    let stage = firsts.lastIndex { $0 <= slot }!
    return (stage, slot - firsts[stage])
  }

  /// A replica's timeline in the merged trace: stage k's first replica is k + 1, its others
  /// 100 × replica above.
  public static func tracePid(stage: Int, replica: Int) -> Int { stage + 1 + 100 * replica }

  /// Each slot's stage, comma-separated ("0,1,1,2"): `STAGEWISE_SLOT_STAGES` for the engines
  /// that number workers (a Slurm rank, a Kubernetes completion index).
  public var slotStages: String {
    (0..<slotCount).map { String(place(ofSlot: $0).stage) }.joined(separator: ",")
  }

  /// "stage 1" with one replica, "stage 1 replica 0" with several.
  public func name(ofSlot slot: Int) -> String { "stage " + label(ofSlot: slot, " replica ") }

  /// "1" with one replica, "1.0" with several (the live view's).
  public func label(ofSlot slot: Int, _ separator: String = ".") -> String {
    let (stage, replica) = place(ofSlot: slot)
    return counts[stage] > 1 ? "\(stage)\(separator)\(replica)" : "\(stage)"
  }
}
