import Foundation
import Learning
import ZMQ

/// CURVE keys on disk, as `stagewise keygen` writes them: `NAME.key` holds the pair (mode
/// 0600: keep it secret), `NAME.pub` the public key alone (hand it out, put it on an
/// allow-list). Wherever a key is asked for, the key itself (Z85) or such a file will do.
public enum KeyFile {
  /// Writes a fresh pair to `base.key` and `base.pub`; returns it.
  public static func generate(base: String) throws -> CurveKeyPair {
    let keys = try CurveKeyPair.generate()
    try AtomicFile.write(
      "# Stagewise CURVE key pair: keep this file secret\npublic: \(keys.publicKey)\nsecret: "
        + "\(keys.secretKey)\n",
      to: "\(base).key", mode: 0o600)
    try AtomicFile.write("\(keys.publicKey)\n", to: "\(base).pub")
    return keys
  }

  /// A key pair from a Z85 secret key or a `.key` file.
  public static func keyPair(_ source: String) throws(RuntimeError) -> CurveKeyPair {
    if let keys = CurveKeyPair(secretKey: source) { return keys }
    let text = try contents(source, what: "key file")
    guard let secret = field("secret", in: text), let keys = CurveKeyPair(secretKey: secret) else {
      throw RuntimeError(
        "\(source) holds no secret key: give a file written by `stagewise keygen` (NAME.key)")
    }
    return keys
  }

  /// A public key from a Z85 key, a `.pub` file or a `.key` file.
  public static func publicKey(_ source: String) throws(RuntimeError) -> String {
    if CurveKeyPair.isKey(source) { return source }
    let text = try contents(source, what: "public key")
    if let key = field("public", in: text), CurveKeyPair.isKey(key) { return key }
    let bare = text.trimmingCharacters(in: .whitespacesAndNewlines)
    guard CurveKeyPair.isKey(bare) else {
      throw RuntimeError(
        "\(source) holds no public key: give a key (40 Z85 characters) or a file written by "
          + "`stagewise keygen`"
      )
    }
    return bare
  }

  static func contents(_ path: String, what: String) throws(RuntimeError) -> String {
    guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
      throw RuntimeError(
        "\(path) is neither a \(what) nor a readable file: make keys with `stagewise keygen --out "
          + "NAME`"
      )
    }
    return text
  }

  static func field(_ name: String, in text: String) -> String? {
    text.split(separator: "\n").first { $0.hasPrefix("\(name):") }
      .map { $0.dropFirst(name.count + 1).trimmingCharacters(in: .whitespaces) }
  }
}
