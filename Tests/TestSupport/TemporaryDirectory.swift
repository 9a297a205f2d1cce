import Foundation

/// A fresh folder under the system's temporary directory, named for what it holds; the
/// caller removes it.
public func temporaryDirectory(_ label: String = "test") throws -> String {
  let path = temporaryPath(label)
  try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
  return path
}

/// A fresh folder for `body`, removed afterwards.
public func withTemporaryDirectory<T>(_ label: String = "test", _ body: (String) throws -> T) throws -> T {
  let path = try temporaryDirectory(label)
  defer { try? FileManager.default.removeItem(atPath: path) }
  return try body(path)
}

/// The package root, found from this file's path (Tests/TestSupport/…).
public let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
  .deletingLastPathComponent().deletingLastPathComponent().path

/// A path no other test uses (nothing is created there).
public func temporaryPath(_ label: String, extension suffix: String = "") -> String {
  NSTemporaryDirectory() + "stagewise-\(label)-\(UUID().uuidString)" + suffix
}
