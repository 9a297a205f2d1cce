import Foundation
import Linalg

/// Terminal output: results on stdout, progress and diagnostics on stderr.
enum Console {
  static let isTerminal = isatty(STDERR_FILENO) == 1

  static func print(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
  }

  static func status(_ line: String) {
    FileHandle.standardError.write(Data((line + "\n").utf8))
  }

  /// The run header's hardware line: the CPU, its vector ISA, the OpenBLAS core and why.
  static func kernels(prefix: String = "") {
    status(prefix + KernelReport.current.line)
  }

  /// Redraws one progress line in place (terminals only).
  static func progress(_ line: String) {
    guard isTerminal else { return }
    FileHandle.standardError.write(Data(("\r\u{1B}[K" + line).utf8))
  }

  static func clearProgress() {
    guard isTerminal else { return }
    FileHandle.standardError.write(Data("\r\u{1B}[K".utf8))
  }

  /// `[#####.....]`
  static func bar(_ done: Int, of total: Int, width: Int = 24) -> String {
    let filled = total > 0 ? done * width / total : 0
    return "[" + String(repeating: "#", count: filled)
      + String(repeating: ".", count: width - filled) + "]"
  }
}
