import Foundation
import Synchronization

/// SIGINT and SIGTERM turn into a flag the I/O loops poll: they drain and save, then exit 0.
public enum Signals {
  static let stopFlag = Atomic<Int32>(0)

  /// The signal that asked us to stop, if one did.
  public static var stopRequested: Int32? {
    let value = stopFlag.load(ordering: .relaxed)
    return value == 0 ? nil : value
  }

  /// Installs handlers for SIGINT and SIGTERM (SIGINT ignored when `ignoreInterrupt`: a
  /// launched worker leaves Ctrl-C to its launcher, which drains the pipeline first).
  public static func install(ignoreInterrupt: Bool = false) {
    let handler: @convention(c) (Int32) -> Void = { signal in
      Signals.stopFlag.store(signal, ordering: .relaxed)
    }
    signal(SIGTERM, handler)
    signal(SIGINT, ignoreInterrupt ? SIG_IGN : handler)
    // A parent may have spawned us with these blocked (the mask survives exec): unblock them.
    var set = sigset_t()
    sigemptyset(&set)
    sigaddset(&set, SIGINT)
    sigaddset(&set, SIGTERM)
    pthread_sigmask(SIG_UNBLOCK, &set, nil)
  }

  /// Clears the flag (tests run several jobs in one process).
  public static func reset() { stopFlag.store(0, ordering: .relaxed) }
}
