import Foundation

/// Writes a whole file so that readers see the old content or the new, never a half: a
/// temporary file beside the target, fsync, rename, fsync of the folder.
public enum AtomicFile {
  public struct WriteError: Error, CustomStringConvertible {
    public var path: String
    public var operation: String
    public var errno: Int32
    public var description: String {
      "cannot write \(path): \(operation) failed: \(String(cString: strerror(errno))) (check free "
        + "space and permissions)"
    }
  }

  /// The temporary file a write goes through before its rename.
  static func temporaryPath(for path: String) -> String { "\(path)\(temporaryMark)\(getpid())" }
  static let temporaryMark = ".tmp-"

  /// Removes the temporary files of writes that never finished (a process killed mid-write)
  /// among the files in `directory` whose names end, before the mark, in `suffix`.
  public static func removeUnfinished(in directory: String, suffix: String) {
    for file in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
    where file.contains(suffix + temporaryMark) {
      try? FileManager.default.removeItem(atPath: "\(directory)/\(file)")
    }
  }

  public static func write(_ bytes: [UInt8], to path: String, mode: mode_t = 0o644)
    throws(WriteError)
  {
    let temporary = temporaryPath(for: path)
    let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC, mode)
    guard fd >= 0 else { throw WriteError(path: path, operation: "open", errno: errno) }
    var written = 0
    while written < bytes.count {
      let n = bytes.withUnsafeBytes {
        Foundation.write(fd, $0.baseAddress! + written, $0.count - written)
      }
      if n < 0 && errno == EINTR { continue }
      guard n > 0 else {
        let code = errno
        close(fd)
        unlink(temporary)
        throw WriteError(path: path, operation: "write", errno: code)
      }
      written += n
    }
    guard fsync(fd) == 0 else {
      let code = errno
      close(fd)
      unlink(temporary)
      throw WriteError(path: path, operation: "fsync", errno: code)
    }
    close(fd)
    guard rename(temporary, path) == 0 else {
      let code = errno
      unlink(temporary)
      throw WriteError(path: path, operation: "rename", errno: code)
    }
    let folder = open(
      (path as NSString).deletingLastPathComponent.isEmpty
        ? "." : (path as NSString).deletingLastPathComponent, O_RDONLY)
    if folder >= 0 {
      fsync(folder)
      close(folder)
    }
  }

  public static func write(_ text: String, to path: String, mode: mode_t = 0o644) throws(WriteError)
  {
    try write(Array(text.utf8), to: path, mode: mode)
  }
}
