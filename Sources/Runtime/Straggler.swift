import Foundation
import Learning

/// The straggler experiment (`daemon.slowStage`, `daemon.slowdown`), a wrapper the benchmarks
/// install around one stage from outside its stage machine: after each batch's step (the
/// machine's `.computed`) the slowed stage waits out (slowdown − 1) × its own step time, so it
/// takes `slowdown` times as long without computing more. That step time is the fastest of
/// its last `window` steps, not this step's: a step slowed by other processes sharing the
/// cores (three workers on two cores, say) is not stretched again, so the wait models a
/// machine `slowdown` times slower and not this host's contention (which still shows in the
/// compute itself).
struct Straggler {
  let slowdown: Double
  static let window = 16
  private var recent: [Int64] = []

  /// The wait for stage `stage` of `config`, or nil when it is not the slowed one.
  init?(config: RunConfig, stage: Int) {
    guard config.daemon.slowdown > 1, config.daemon.slowStage == stage else { return nil }
    slowdown = config.daemon.slowdown
  }

  /// How long to wait after a step that computed for `computedMicros`.
  mutating func waitMicros(afterComputing computedMicros: Int64) -> Int64 {
    recent.append(computedMicros)
    if recent.count > Self.window { recent.removeFirst() }
    return Int64(Double(max(0, recent.min()!)) * (slowdown - 1))
  }

  /// Waits out the rest of a step that computed for `computedMicros`.
  mutating func wait(afterComputing computedMicros: Int64) {
    usleep(UInt32(clamping: waitMicros(afterComputing: computedMicros)))
  }
}
