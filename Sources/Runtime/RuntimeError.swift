/// Why a scheduler, worker or launcher stopped, and what to do about it.
public struct RuntimeError: Error, CustomStringConvertible, Sendable {
  public var message: String
  public init(_ message: String) { self.message = message }
  public var description: String { message }
}
