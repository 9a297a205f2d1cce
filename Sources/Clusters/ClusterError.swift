/// What is wrong with how a worker was told to find its scheduler, and what to do.
public struct ClusterError: Error, CustomStringConvertible, Sendable {
  public var description: String
  public init(_ description: String) { self.description = description }
}
