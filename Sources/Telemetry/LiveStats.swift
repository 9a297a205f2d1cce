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
  /// A line per worker: `labels[k]` names it ("2", or "1.0" for stage 1's first replica; by
  /// default its index), `queueDepth[k]`: data messages sent to its stage and not yet handled.
  public static func render(_ stats: [LiveStats?], labels: [String]? = nil, queueDepth: [Int])
    -> [String]
  {
    var lines = ["stage      step      loss   samples/s   busy   queue   rejected"]
    for (k, s) in stats.enumerated() {
      let label = labels?[k] ?? "\(k)"
      guard let s else {
        lines.append(pad(label, 5) + "   (no report yet)")
        continue
      }
      let rejected = s.rejected.values.reduce(0, +)
      lines.append(
        pad(label, 5) + pad("\(s.step)", 10) + pad(fixed(s.loss, 4), 10)
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
