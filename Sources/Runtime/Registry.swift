import Wire

/// Which worker holds which stage: the registration state machine of the scheduler, without
/// I/O. A HELLO takes the stage it asks for if that is vacant, else the lowest vacant one.
public struct Registry: Sendable {
  public struct Member: Sendable, Equatable {
    public var identity: [UInt8]
    public var hello: Hello
    public var ready = false
    public var lastHeardMicros: Int64
  }

  public private(set) var members: [Member?]

  public init(stageCount: Int) { members = Array(repeating: nil, count: stageCount) }

  public var isFull: Bool { members.allSatisfy { $0 != nil } }
  public var allReady: Bool { members.allSatisfy { $0?.ready == true } }
  public var stageCount: Int { members.count }

  public func stage(of identity: [UInt8]) -> Int? {
    members.firstIndex { $0?.identity == identity }
  }

  /// Registers a worker; returns its stage, or why it is refused.
  public mutating func register(identity: [UInt8], hello: Hello, nowMicros: Int64) -> Result<Int, RuntimeError> {
    guard hello.protocolVersion == Int(Protocol.version) else {
      return .failure(RuntimeError("protocol version \(hello.protocolVersion) refused: the scheduler speaks \(Protocol.version); run the same stagewise build everywhere"))
    }
    if let existing = stage(of: identity) { return .success(existing) }
    let stage: Int
    if let requested = hello.requestedStage {
      guard members.indices.contains(requested) else {
        return .failure(RuntimeError("stage \(requested) does not exist: this job has stages 0…\(members.count - 1)"))
      }
      guard members[requested] == nil else {
        return .failure(RuntimeError("stage \(requested) is already taken by \(members[requested]!.hello.host) pid \(members[requested]!.hello.pid)"))
      }
      stage = requested
    } else {
      guard let vacant = members.firstIndex(where: { $0 == nil }) else {
        return .failure(RuntimeError("every stage of this job is taken"))
      }
      stage = vacant
    }
    members[stage] = Member(identity: identity, hello: hello, lastHeardMicros: nowMicros)
    return .success(stage)
  }

  public mutating func markReady(_ stage: Int) { members[stage]?.ready = true }

  public mutating func heard(from stage: Int, atMicros now: Int64) { members[stage]?.lastHeardMicros = now }

  /// Stages silent for longer than `limitMicros`.
  public func silent(nowMicros: Int64, limitMicros: Int64) -> [Int] {
    members.indices.filter { members[$0].map { nowMicros - $0.lastHeardMicros > limitMicros } ?? false }
  }
}
