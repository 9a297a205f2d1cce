/// A configuration problem: where it is (a key path such as `stages[2].layers[0]`) and what
/// to change.
public struct ConfigError: Error, CustomStringConvertible, Sendable, Equatable {
  public var path: String
  public var message: String

  public init(path: String, _ message: String) {
    self.path = path
    self.message = message
  }

  public init(codingPath: [any CodingKey], _ message: String) {
    self.init(path: Self.format(codingPath), message)
  }

  public var description: String { path.isEmpty ? message : "\(path): \(message)" }

  /// `[stages, 2, layers]` → `stages[2].layers`.
  public static func format(_ codingPath: [any CodingKey]) -> String {
    var text = ""
    for key in codingPath {
      if let index = key.intValue {
        text += "[\(index)]"
      } else {
        text += text.isEmpty ? key.stringValue : ".\(key.stringValue)"
      }
    }
    return text
  }

  /// Turns a Codable or YAML error into one line with its key path.
  public static func from(_ error: any Error) -> ConfigError {
    if let error = error as? ConfigError { return error }
    guard let decoding = error as? DecodingError else {
      return ConfigError(path: "", "not valid YAML: \(error)")
    }
    switch decoding {
    case .typeMismatch(let type, let context):
      return ConfigError(codingPath: context.codingPath, "expected \(describe(type))")
    case .valueNotFound(let type, let context):
      // Yams reports a scalar it cannot convert (`epochs: many`) this way too.
      return ConfigError(
        codingPath: context.codingPath,
        "expected \(describe(type)), found none or an unreadable value")
    case .keyNotFound(let key, let context):
      return ConfigError(codingPath: context.codingPath + [key], "required key is missing")
    case .dataCorrupted(let context):
      // Yams wraps what our decoders throw; the inner error has the precise path.
      if let inner = context.underlyingError, inner is ConfigError || inner is DecodingError {
        return from(inner)
      }
      if let inner = context.underlyingError {
        return ConfigError(codingPath: context.codingPath, "not valid YAML: \(inner)")
      }
      return ConfigError(codingPath: context.codingPath, context.debugDescription)
    @unknown default:
      return ConfigError(path: "", "\(error)")
    }
  }

  static func describe(_ type: Any.Type) -> String {
    switch type {
    case is Int.Type, is UInt64.Type: "an integer"
    case is Float.Type, is Double.Type: "a number"
    case is Bool.Type: "true or false"
    case is String.Type: "a string"
    // Yams asks for a `Scalar` when a list or map stands where one value belongs.
    case _ where "\(type)".contains("Scalar"): "a single value, not a list or map"
    default: "\(type)"
    }
  }
}
