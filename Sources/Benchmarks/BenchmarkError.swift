/// Why a benchmark could not run as asked, and what to do.
public struct BenchmarkError: Error, CustomStringConvertible, Sendable {
  public var description: String
  public init(_ description: String) { self.description = description }
}
