/// Decoding helpers shared by every config section: defaults for absent keys, unknown keys
/// rejected by name, enums listing their valid values.

struct AnyCodingKey: CodingKey {
  var stringValue: String
  var intValue: Int?
  init(stringValue: String) { self.stringValue = stringValue }
  init?(intValue: Int) {
    self.stringValue = "\(intValue)"
    self.intValue = intValue
  }
}

extension Decoder {
  /// Throws on any key that `Keys` does not name, listing the valid ones.
  func rejectUnknownKeys<Keys: CodingKey & CaseIterable>(_ keys: Keys.Type) throws {
    try rejectUnknownKeys(Keys.allCases.map(\.stringValue))
  }

  /// Throws on any key not in `valid`, listing the valid ones.
  func rejectUnknownKeys(_ valid: [String]) throws {
    let container = try self.container(keyedBy: AnyCodingKey.self)
    for key in container.allKeys where !valid.contains(key.stringValue) {
      throw ConfigError(
        codingPath: codingPath + [key],
        "unknown key; valid keys here: \(valid.joined(separator: ", "))")
    }
  }
}

extension KeyedDecodingContainer {
  /// The value at `key`, or `fallback` when the key is absent.
  func value<T: Decodable>(_ key: Key, or fallback: T) throws -> T {
    try decodeIfPresent(T.self, forKey: key) ?? fallback
  }

  /// A string-backed enum at `key`, or `fallback`; a bad value names the valid ones.
  func choice<T: RawRepresentable & CaseIterable>(_ key: Key, or fallback: T) throws -> T
  where T.RawValue == String {
    guard let text = try decodeIfPresent(String.self, forKey: key) else { return fallback }
    guard let value = T(rawValue: text) else {
      let valid = T.allCases.map(\.rawValue).joined(separator: ", ")
      throw ConfigError(codingPath: codingPath + [key], "`\(text)` is not one of: \(valid)")
    }
    return value
  }
}
