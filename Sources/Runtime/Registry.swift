import Wire

/// Which worker holds which stage: the registration state machine of the scheduler, without
/// I/O. A HELLO takes the stage it asks for, else the lowest vacant one. Until every stage is
/// filled (nothing is assigned before that), a worker that asked for no stage floats: an
/// explicit request for its stage moves it to another vacant one instead of being refused.
/// After a failure the dead stage is vacated and the survivors say HELLO again; stages are
/// assigned once every stage has a worker that is waiting for its assignment.
public struct Registry: Sendable {
  public struct Member: Sendable, Equatable {
    public var identity: [UInt8]
    public var hello: Hello
    public var ready = false
    /// Holds its current assignment (false from HELLO until the next ASSIGN).
    public var assigned = false
    public var lastHeardMicros: Int64
  }

  public private(set) var members: [Member?]

  public init(stageCount: Int) { members = Array(repeating: nil, count: stageCount) }

  public var isFull: Bool { members.allSatisfy { $0 != nil } }
  public var allReady: Bool { members.allSatisfy { $0?.ready == true } }
  /// Every stage has a worker waiting for its assignment.
  public var readyToAssign: Bool { members.allSatisfy { $0?.assigned == false } }
  public var stageCount: Int { members.count }

  public func stage(of identity: [UInt8]) -> Int? {
    members.firstIndex { $0?.identity == identity }
  }

  /// Registers a worker; returns its stage, or why it is refused.
  public mutating func register(identity: [UInt8], hello: Hello, nowMicros: Int64)
    -> Result<Int, RuntimeError>
  {
    guard hello.protocolVersion == Int(Protocol.version) else {
      return .failure(
        RuntimeError(
          "protocol version \(hello.protocolVersion) refused: the scheduler speaks "
            + "\(Protocol.version); run the same stagewise build everywhere"))
    }
    if let existing = stage(of: identity) {  // a survivor of a failure, waiting again
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

  /// The stage a worker asked for: free, or held by a floating worker who moves over.
  private mutating func take(_ requested: Int) -> Result<Int, RuntimeError> {
    guard members.indices.contains(requested) else {
      return .failure(
        RuntimeError(
          "stage \(requested) does not exist: this job has stages 0…\(members.count - 1)"))
    }
    if let holder = members[requested] {
      guard holder.hello.requestedStage == nil,
        let vacant = members.firstIndex(where: { $0 == nil })
      else {
        let who = "\(holder.hello.host) pid \(holder.hello.pid)"
        return .failure(RuntimeError("stage \(requested) is already taken by \(who)"))
      }
      members[vacant] = holder  // the floating worker moves over
      members[requested] = nil
    }
    return .success(requested)
  }

  /// The lowest vacant stage.
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

  /// A dead worker's stage becomes vacant; everyone else must get ready again.
  public mutating func vacate(_ stage: Int) {
    members[stage] = nil
    for other in members.indices { members[other]?.ready = false }
  }

  public mutating func heard(from stage: Int, atMicros now: Int64) {
    members[stage]?.lastHeardMicros = now
  }

  /// Stages silent for longer than `limitMicros`.
  public func silent(nowMicros: Int64, limitMicros: Int64) -> [Int] {
    members.indices.filter {
      members[$0].map { nowMicros - $0.lastHeardMicros > limitMicros } ?? false
    }
  }
}
