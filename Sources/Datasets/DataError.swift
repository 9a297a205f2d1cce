/// Why a data set could not be read, and what to do about it.
public struct DataError: Error, CustomStringConvertible, Sendable, Equatable {
  public var message: String
  public var hint: String

  public init(_ message: String, hint: String = "") {
    self.message = message
    self.hint = hint
  }

  public var description: String { hint.isEmpty ? message : "\(message) (\(hint))" }
}
