/// One key of a config section, declared once: its name, where its value lives, what it must
/// satisfy and whether it enters the model hash. The section's `init()` holds the defaults;
/// decoding, encoding, validation and the model hash all read the declarations.
struct ConfigKey<Section> {
  let name: String
  /// The leaf keys' paths under this one: `[name]`, or a section's keys prefixed by `name`.
  let paths: [String]
  /// Reads the key when present (absent: the default stays).
  let decode: (inout Section, KeyedDecodingContainer<AnyCodingKey>) throws -> Void
  let encode: (Section, inout KeyedEncodingContainer<AnyCodingKey>) throws -> Void
  /// Throws when the value is out of range; gets the key's path (`training.epochs`).
  let check: (Section, String) throws(ConfigError) -> Void
  /// What the key adds to the model identity, under which name (nothing: not in the model).
  let identity: (Section) -> [(String, any Encodable)]
}

/// Whether a key enters the model hash: what the weights mean and a resumed run must keep.
/// Keys that do not may change when a stopped run goes on (epochs, rates, threads, daemon).
enum ModelRole<Section> {
  case excluded
  /// Under its own name (a section: its own model keys, nested).
  case included
  /// The same, only when `when` holds for the section that has the key.
  case includedWhen((Section) -> Bool)
  /// Under another name, the one the model hashes in existing checkpoints use.
  case named(String)
  /// As this value whatever the key holds: the key may change, and hashes already written
  /// carry this value in its place.
  case fixed(any Encodable)
  /// A section whose model keys enter the identity one by one, beside this section's own.
  case flattened
  /// Under its own name, as what `view` makes of the section (a key part of which is not the
  /// model's).
  case includedAs((Section) -> any Encodable)
}

/// A struct whose keys are declared once, in `keys`.
protocol ConfigSection: Codable, Equatable, Sendable {
  init()
  static var keys: [ConfigKey<Self>] { get }
}

extension ConfigSection {
  /// Decodes the declared keys over the defaults; an undeclared key is refused by name.
  init(declaredFrom decoder: any Decoder) throws {
    try decoder.rejectUnknownKeys(Self.keys.map(\.name))
    let c = try decoder.container(keyedBy: AnyCodingKey.self)
    self.init()
    for key in Self.keys { try key.decode(&self, c) }
  }

  func encodeDeclared(to encoder: any Encoder) throws {
    var c = encoder.container(keyedBy: AnyCodingKey.self)
    for key in Self.keys { try key.encode(self, &c) }
  }

  /// Checks every declared key, naming it under `path` (nested sections check their own).
  func checkDeclared(path: String) throws(ConfigError) {
    for key in Self.keys { try key.check(self, path.isEmpty ? key.name : "\(path).\(key.name)") }
  }

  /// The model identity's entries this section adds, in declaration order.
  var identityEntries: [(String, any Encodable)] { Self.keys.flatMap { $0.identity(self) } }
}

/// A section's model keys as one nested value of the identity.
struct ModelView: Encodable {
  let entries: [(String, any Encodable)]

  func encode(to encoder: any Encoder) throws {
    var c = encoder.container(keyedBy: AnyCodingKey.self)
    for (name, value) in entries {
      try c.encode(Encoded(value: value), forKey: AnyCodingKey(stringValue: name))
    }
  }

  /// Any encodable value, encoded as itself.
  struct Encoded: Encodable {
    let value: any Encodable
    func encode(to encoder: any Encoder) throws { try value.encode(to: encoder) }
  }
}

extension ConfigKey {
  /// A plain value. `check` returns what is wrong, or nil; `omitsDefault` leaves the key out
  /// of the YAML and the model identity at its default (so that a key added after checkpoints
  /// were written leaves their hash as it was).
  static func value<T: Codable & Equatable>(
    _ name: String, _ path: WritableKeyPath<Section, T>, model: ModelRole<Section> = .excluded,
    omitsDefault: Bool = false, check: @escaping (T) -> String? = { _ in nil }
  ) -> ConfigKey where Section: ConfigSection {
    let key = AnyCodingKey(stringValue: name)
    return ConfigKey(
      name: name, paths: [name],
      decode: { section, c in
        if let v = try c.decodeIfPresent(T.self, forKey: key) { section[keyPath: path] = v }
      },
      encode: { section, c in
        let v = section[keyPath: path]
        if !(omitsDefault && v == Section()[keyPath: path]) { try c.encode(v, forKey: key) }
      },
      check: { section, at throws(ConfigError) in
        if let problem = check(section[keyPath: path]) { throw ConfigError(path: at, problem) }
      },
      identity: { section in
        let atDefault = omitsDefault && section[keyPath: path] == Section()[keyPath: path]
        return atDefault ? [] : identity(name, model) { $0[keyPath: path] }(section)
      })
  }

  /// An optional value: absent means nil, and nil is not written.
  static func optional<T: Codable & Equatable>(
    _ name: String, _ path: WritableKeyPath<Section, T?>, model: ModelRole<Section> = .excluded,
    check: @escaping (T) -> String? = { _ in nil }
  ) -> ConfigKey {
    let key = AnyCodingKey(stringValue: name)
    return ConfigKey(
      name: name, paths: [name],
      decode: { section, c in section[keyPath: path] = try c.decodeIfPresent(T.self, forKey: key) },
      encode: { section, c in try c.encodeIfPresent(section[keyPath: path], forKey: key) },
      check: { section, at throws(ConfigError) in
        if let v = section[keyPath: path], let problem = check(v) {
          throw ConfigError(path: at, problem)
        }
      },
      identity: { section in
        section[keyPath: path] == nil ? [] : identity(name, model) { $0[keyPath: path]! }(section)
      })
  }

  /// One of an enum's cases, written by name; a bad name lists the valid ones.
  static func choice<T: RawRepresentable & CaseIterable & Codable & Equatable>(
    _ name: String, _ path: WritableKeyPath<Section, T>, model: ModelRole<Section> = .excluded
  ) -> ConfigKey where T.RawValue == String {
    let key = AnyCodingKey(stringValue: name)
    return ConfigKey(
      name: name, paths: [name],
      decode: { section, c in
        section[keyPath: path] = try c.choice(key, or: section[keyPath: path])
      },
      encode: { section, c in try c.encode(section[keyPath: path], forKey: key) },
      check: { _, _ in },
      identity: identity(name, model) { $0[keyPath: path] })
  }

  /// A nested section: its keys decode, encode and check under `name`.
  static func section<T: ConfigSection>(
    _ name: String, _ path: WritableKeyPath<Section, T>, model: ModelRole<Section> = .excluded,
    omitsDefault: Bool = false
  ) -> ConfigKey where Section: ConfigSection {
    let key = AnyCodingKey(stringValue: name)
    return ConfigKey(
      name: name, paths: T.keys.flatMap(\.paths).map { "\(name).\($0)" },
      decode: { section, c in
        if let v = try c.decodeIfPresent(T.self, forKey: key) { section[keyPath: path] = v }
      },
      encode: { section, c in
        let v = section[keyPath: path]
        if !(omitsDefault && v == Section()[keyPath: path]) { try c.encode(v, forKey: key) }
      },
      check: { section, at throws(ConfigError) in try section[keyPath: path].checkDeclared(path: at)
      },
      identity: { section in
        let value = section[keyPath: path]
        if case .flattened = model { return value.identityEntries }
        return identity(name, model) { _ in ModelView(entries: value.identityEntries) }(section)
      })
  }

  /// The identity entry of a key in `role`, its value read by `value`.
  private static func identity(
    _ name: String, _ role: ModelRole<Section>, _ value: @escaping (Section) -> any Encodable
  ) -> (Section) -> [(String, any Encodable)] {
    { section in
      switch role {
      case .excluded, .flattened: []
      case .included: [(name, value(section))]
      case .includedWhen(let when): when(section) ? [(name, value(section))] : []
      case .named(let other): [(other, value(section))]
      case .fixed(let constant): [(name, constant)]
      case .includedAs(let view): [(name, view(section))]
      }
    }
  }
}
