import Foundation

/// Microseconds since the Unix epoch from CLOCK_REALTIME: comparable across processes on one
/// host, and across hosts once each worker's offset to the scheduler is applied.
public enum WallClock {
  public static func micros() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Int64(ts.tv_sec) * 1_000_000 + Int64(ts.tv_nsec) / 1000
  }
}

/// Estimates this process's clock offset to the scheduler's from heartbeat round trips (the
/// NTP idea): offset = schedulerTime − (sent + received) / 2, kept from the shortest round trip
/// seen, whose error is at most half of it. A scheduler on this host reads the same clock:
/// the offset is exactly 0, and no estimate (whose error grows with a loaded machine's
/// scheduling delays) replaces it.
public struct ClockSync: Sendable {
  public private(set) var offsetMicros: Int64 = 0
  public private(set) var bestRoundTripMicros: Int64 = .max
  public let sameClock: Bool

  public init(sameClock: Bool = false) { self.sameClock = sameClock }

  public mutating func observe(sentMicros: Int64, schedulerMicros: Int64, receivedMicros: Int64) {
    guard !sameClock else { return }
    let roundTrip = receivedMicros - sentMicros
    guard roundTrip >= 0, roundTrip < bestRoundTripMicros else { return }
    bestRoundTripMicros = roundTrip
    offsetMicros = schedulerMicros - (sentMicros + receivedMicros) / 2
  }
}
