import Telemetry

/// Busy time, loss and samples since the last live report.
struct StatsWindow {
  var startMicros = WallClock.micros()
  var busyMicros: Int64 = 0
  var lossSum = 0.0
  var lossCount = 0
  var samples = 0

  mutating func add(busyMicros busy: Int64, loss: Float?, samples n: Int) {
    busyMicros += busy
    if let loss {
      lossSum += Double(loss)
      lossCount += 1
    }
    samples += n
  }

  func report(
    stage: Int, step: Int, lastSequence: UInt64, rejected: [String: Int], nowMicros: Int64
  ) -> LiveStats {
    let elapsed = Double(max(nowMicros - startMicros, 1))
    return LiveStats(
      stage: stage, step: step, loss: lossCount > 0 ? lossSum / Double(lossCount) : .nan,
      samplesPerSecond: Double(samples) / elapsed * 1e6, busy: Double(busyMicros) / elapsed,
      lastSequence: lastSequence, rejected: rejected)
  }
}
