/// Which job's messages a process takes: the current one. Messages of a job a recovery retired
/// are still in flight, not a peer's mistake: they are refused as stale, the others as for the
/// wrong job. The one check the scheduler and the workers make on every plane.
public struct JobFilter: Sendable {
  public private(set) var retired: Set<UInt32> = []

  public init() {}

  public mutating func retire(_ job: UInt32) { retired.insert(job) }

  public func check(_ message: Message, current: UInt32) throws(WireError) {
    guard message.job != current else { return }
    if retired.contains(message.job) { throw .staleJob(message.job) }
    throw .wrongJob(message.job, expected: current)
  }
}
