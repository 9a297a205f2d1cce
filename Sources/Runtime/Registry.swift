import Learning
import Wire

/// Which worker holds which slot — a stage's replica (`ReplicaLayout`; with one replica per
/// stage a slot is its stage): the registration state machine of the scheduler, without
/// I/O. A HELLO takes a vacant slot of the stage it asks for, else the lowest vacant one.
/// Until every slot is filled (nothing is assigned before that), a worker that asked for no
/// stage floats: an explicit request for its stage moves it to another vacant one instead of
/// being refused. After a failure the dead slot is vacated and the survivors say HELLO again;
/// slots are assigned once every one has a worker that is waiting for its assignment.
public struct Registry: Sendable {
  public struct Member: Sendable, Equatable {
    public var identity: [UInt8]
    public var hello: Hello
    public var ready = false
    /// Holds its current assignment (false from HELLO until the next ASSIGN).
    public var assigned = false
    public var lastHeardMicros: Int64
  }

  /// By slot.
  public private(set) var members: [Member?]
  public let layout: ReplicaLayout

  public init(stageCount: Int) {
    self.init(layout: ReplicaLayout(counts: .init(repeating: 1, count: stageCount)))
  }

  public init(layout: ReplicaLayout) {
    self.layout = layout
    members = Array(repeating: nil, count: layout.slotCount)
  }

  public var isFull: Bool { members.allSatisfy { $0 != nil } }
  public var allReady: Bool { members.allSatisfy { $0?.ready == true } }
  /// Every stage has a worker waiting for its assignment.
  public var readyToAssign: Bool { members.allSatisfy { $0?.assigned == false } }
  public var stageCount: Int { layout.stageCount }

  /// The slot of the worker with this routing identity.
  public func slot(of identity: [UInt8]) -> Int? {
    members.firstIndex { $0?.identity == identity }
  }

  /// Registers a worker; returns its slot, or why it is refused.
  public mutating func register(identity: [UInt8], hello: Hello, nowMicros: Int64)
    -> Result<Int, RuntimeError>
  {
    if let problem = Self.versionProblem(hello) { return .failure(problem) }
    if let existing = slot(of: identity) {  // a survivor of a failure, waiting again
      members[existing]?.assigned = false
      members[existing]?.ready = false
      return .success(existing)
    }
    let place = hello.requestedStage.map { take($0) } ?? vacancy()
    if case .success(let stage) = place {
      members[stage] = Member(identity: identity, hello: hello, lastHeardMicros: nowMicros)
    }
    return place
  }

  /// Why a worker cannot take part, if it speaks another protocol version.
  static func versionProblem(_ hello: Hello) -> RuntimeError? {
    guard hello.protocolVersion != Int(Protocol.version) else { return nil }
    return RuntimeError(
      "protocol version \(hello.protocolVersion) refused: the scheduler speaks "
        + "\(Protocol.version); run the same stagewise build everywhere")
  }

  /// A slot of the stage a worker asked for: a free one, or one held by a floating worker who
  /// moves over.
  private mutating func take(_ requested: Int) -> Result<Int, RuntimeError> {
    guard (0..<stageCount).contains(requested) else {
      return .failure(
        RuntimeError(
          "stage \(requested) does not exist: this job has stages 0…\(stageCount - 1)"))
    }
    let slots = layout.slots(ofStage: requested)
    if let free = slots.first(where: { members[$0] == nil }) { return .success(free) }
    guard let floating = slots.first(where: { members[$0]!.hello.requestedStage == nil }),
      let vacant = members.firstIndex(where: { $0 == nil })
    else {
      let holders = slots.map { "\(members[$0]!.hello.host) pid \(members[$0]!.hello.pid)" }
      let taken =
        slots.count > 1
        ? "every replica of stage \(requested) is already taken (by "
          + "\(holders.joined(separator: ", ")))"
        : "stage \(requested) is already taken by \(holders[0])"
      return .failure(RuntimeError(taken))
    }
    members[vacant] = members[floating]  // the floating worker moves over
    members[floating] = nil
    return .success(floating)
  }

  /// The lowest vacant slot.
  private func vacancy() -> Result<Int, RuntimeError> {
    guard let vacant = members.firstIndex(where: { $0 == nil }) else {
      return .failure(RuntimeError("every stage of this job is taken"))
    }
    return .success(vacant)
  }

  public mutating func markReady(_ stage: Int) { members[stage]?.ready = true }

  public mutating func markAllAssigned() {
    for stage in members.indices { members[stage]?.assigned = true }
  }

  /// A dead worker's slot becomes vacant; everyone else must get ready again.
  public mutating func vacate(_ stage: Int) {
    members[stage] = nil
    for other in members.indices { members[other]?.ready = false }
  }

  /// A dead replica's slot is left empty while the job goes on without it (nobody else is
  /// reset); the next `relaid` removes it.
  public mutating func drop(_ slot: Int) { members[slot] = nil }

  /// This registry without the `leaving` workers and the `dropped` slots and with the
  /// `joining` ones as the last replicas of their stages; everyone else keeps its stage and
  /// replica order and is to say HELLO again (it is being reset).
  func relaid(
    leaving: Set<[UInt8]>, joining: [(stage: Int, member: Member)], dropped: Set<Int> = []
  ) -> Registry {
    // Vacant slots stay vacant (and counted): they wait for a replacement.
    var byStage = (0..<stageCount).map { stage in
      layout.slots(ofStage: stage).filter { !dropped.contains($0) }.map { members[$0] }
        .filter { $0.map { !leaving.contains($0.identity) } ?? true }
        .map { member in
          var member = member
          member?.ready = false
          return member
        }
    }
    for join in joining { byStage[join.stage].append(join.member) }
    var relaid = Registry(layout: ReplicaLayout(counts: byStage.map(\.count)))
    relaid.members = byStage.flatMap { $0 }
    return relaid
  }

  public mutating func heard(from stage: Int, atMicros now: Int64) {
    members[stage]?.lastHeardMicros = now
  }

  /// Slots silent for longer than `limitMicros`.
  public func silent(nowMicros: Int64, limitMicros: Int64) -> [Int] {
    members.indices.filter {
      members[$0].map { nowMicros - $0.lastHeardMicros > limitMicros } ?? false
    }
  }
}
