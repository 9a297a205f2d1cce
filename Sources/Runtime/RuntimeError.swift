/// Why a scheduler, worker or launcher stopped, and what to do about it.
public struct RuntimeError: Error, CustomStringConvertible, Sendable {
  public var message: String
  public init(_ message: String) { self.message = message }
  public var description: String { message }
}

/// A worker that died or fell silent during a run: which stage, why, and how long it had been
/// silent when that was noticed.
public struct WorkerFailure: Error, CustomStringConvertible, Sendable {
  public var stage: Int
  public var reason: String
  public var silentSeconds: Double
  /// The worker's slot when known (its stage's replica), else its process when known: a stage
  /// with replicas loses the one that failed.
  public var slot: Int?
  public var pid: Int32?
  public var description: String { "stage \(stage): \(reason)" }

  public init(
    stage: Int, reason: String, silentSeconds: Double, slot: Int? = nil, pid: Int32? = nil
  ) {
    (self.stage, self.reason, self.silentSeconds, self.slot, self.pid) =
      (stage, reason, silentSeconds, slot, pid)
  }
}

/// One recovery from a worker failure, as listed in `run.json`.
public struct Recovery: Codable, Sendable {
  public var stage: Int
  public var reason: String
  /// How long the stage had been silent when the failure was noticed.
  public var detectedAfterSeconds: Double
  /// From the failure being noticed to training running again.
  public var recoverySeconds: Double?
  /// The checkpoint training continued from: after this many epochs (0: from the start)
  /// and this many of the next epoch's batches (a mid-epoch checkpoint).
  public var resumedAfterEpoch: Int
  public var resumedAfterBatches: Int?
  /// Training batches that had been fed since that checkpoint: trained again.
  public var batchesRetrained: Int
  /// Batches in flight when the failure was noticed (part of the retrained ones).
  public var batchesInFlight: Int
  /// False when a dead replica was left out and the job went on without going back to a
  /// cut (nil: it went back).
  public var rolledBack: Bool? = nil
}
