import Foundation

/// What a worker reports a few times a second for the live view.
public struct LiveStats: Codable, Sendable, Equatable {
  public var stage: Int
  public var step: Int
  /// Mean local loss over the training batches since the last report.
  public var loss: Double
  public var samplesPerSecond: Double
  /// Fraction of wall time spent computing since the last report.
  public var busy: Double
  /// Sequence number of the last data message handled.
  public var lastSequence: UInt64
  /// Messages rejected so far, by reason.
  public var rejected: [String: Int]

  public init(
    stage: Int, step: Int, loss: Double, samplesPerSecond: Double, busy: Double,
    lastSequence: UInt64, rejected: [String: Int]
  ) {
    (
      self.stage, self.step, self.loss, self.samplesPerSecond, self.busy, self.lastSequence,
      self.rejected
    ) =
      (stage, step, loss, samplesPerSecond, busy, lastSequence, rejected)
  }
}

/// The terminal table: one line per stage.
public enum LiveView {
  /// `queueDepth[k]`: data messages sent to stage k and not yet handled by it.
  public static func render(_ stats: [LiveStats?], queueDepth: [Int]) -> [String] {
    var lines = ["stage      step      loss   samples/s   busy   queue   rejected"]
    for (k, s) in stats.enumerated() {
      guard let s else {
        lines.append(pad("\(k)", 5) + "   (no report yet)")
        continue
      }
      let rejected = s.rejected.values.reduce(0, +)
      lines.append(
        pad("\(k)", 5) + pad("\(s.step)", 10) + pad(fixed(s.loss, 4), 10)
          + pad(fixed(s.samplesPerSecond, 0), 12)
          + pad(fixed(s.busy * 100, 0) + "%", 7) + pad("\(queueDepth[k])", 8)
          + pad("\(rejected)", 11))
    }
    return lines
  }

  static func pad(_ text: String, _ width: Int) -> String {
    String(repeating: " ", count: max(0, width - text.count)) + text
  }

  static func fixed(_ value: Double, _ digits: Int) -> String {
    value.isFinite ? String(format: "%.\(digits)f", value) : "-"
  }
}
