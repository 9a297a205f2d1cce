import Foundation
import Learning

/// The straggler experiment (`daemon.slowStage`, `daemon.slowdown`), a wrapper the benchmarks
/// install around one stage from outside its stage machine: after each batch's step (the
/// machine's `.computed`) the slowed stage waits out (slowdown − 1) × that step's compute
/// time, so it takes `slowdown` times as long without computing more.
struct Straggler {
  let slowdown: Double

  /// The wait for stage `stage` of `config`, or nil when it is not the slowed one.
  init?(config: RunConfig, stage: Int) {
    guard config.daemon.slowdown > 1, config.daemon.slowStage == stage else { return nil }
    slowdown = config.daemon.slowdown
  }

  /// Waits out the rest of a step that computed for `computedMicros`.
  func wait(afterComputing computedMicros: Int64) {
    usleep(UInt32(max(0, Double(computedMicros) * (slowdown - 1))))
  }
}
