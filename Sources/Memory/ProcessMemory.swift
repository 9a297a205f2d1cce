import Foundation

/// This process's resident memory, from /proc/self/status (Linux).
public enum ProcessMemory {
  /// Peak resident set size (VmHWM) in bytes, or nil where /proc is not available.
  public static var peakResidentBytes: Int? { field("VmHWM") }

  /// Resets the peak to the current size (Linux ≥ 4.0), so a phase can be measured alone.
  public static func resetPeak() {
    try? "5".write(toFile: "/proc/self/clear_refs", atomically: false, encoding: .utf8)
  }

  static func field(_ name: String) -> Int? {
    guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else {
      return nil
    }
    for line in text.split(separator: "\n") where line.hasPrefix(name + ":") {
      let parts = line.split(separator: " ", omittingEmptySubsequences: true)
      if parts.count >= 2, let kilobytes = Int(parts[1]) { return kilobytes * 1024 }
    }
    return nil
  }
}
