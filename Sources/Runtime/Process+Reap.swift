import Foundation

extension Process {
  /// Waits at most `limit` for the process to exit, polling, so that no wait is unbounded
  /// (`waitUntilExit` has none); true when it has exited and `terminationStatus` is known.
  @discardableResult
  public func waitForExit(within limit: Duration) -> Bool {
    let deadline = ContinuousClock.now + limit
    while isRunning {
      if ContinuousClock.now >= deadline { return false }
      Thread.sleep(forTimeInterval: 0.01)
    }
    return true
  }
}
