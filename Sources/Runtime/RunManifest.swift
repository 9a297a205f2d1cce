import Foundation
import Learning
import Linalg

/// `run.json`: who ran which stage where, and how the run ended. Written when training starts
/// and again at the end; tests and tools read endpoints from it.
public struct RunManifest: Codable, Sendable {
  public struct StageEntry: Codable, Sendable {
    public var stage: Int
    public var host: String
    public var pid: Int32
    public var dataEndpoint: String
    public var checkpoint: String?
    /// Messages this stage rejected, by reason: its last live report while the run goes on,
    /// its BYE's final count at the end.
    public var rejected: [String: Int]?
    public var replay: ReplayStatistics?
    public var peakResidentBytes: Int?
    public var bytesSent: Int?
    /// The worker's OpenBLAS core.
    public var blasCore: String?
    /// Where its gradients arrive (e2e and GPipe).
    public var gradEndpoint: String?
    /// Of `bytesSent`, what went upstream (gradients, DNI's targets, DFA's errors).
    public var bytesSentUpstream: Int?
    /// Its replica of the stage (nil when the stage has one).
    public var replica: Int?
  }

  public var job: UInt32
  public var control: String
  public var sink: String
  public var schedule: String
  public var maxInFlight: Int
  public var stages: [StageEntry]
  /// running, finished, interrupted or failed.
  public var state: String
  public var detail: String?
  /// Messages the scheduler rejected, by reason.
  public var rejected: [String: Int]
  public var epochsCompleted: Int
  /// Worker failures this run survived (the launcher's restarts).
  public var recoveries: [Recovery]?
  /// The scheduler's CPU and OpenBLAS kernels, and why those.
  public var kernels: KernelReport?
}

extension RunManifest {
  /// The `run.json` of `runDirectory`, or nil when there is none (yet) or it cannot be read.
  public static func read(_ runDirectory: String) -> RunManifest? {
    guard let data = FileManager.default.contents(atPath: "\(runDirectory)/run.json") else {
      return nil
    }
    return try? JSONDecoder.stagewise.decode(RunManifest.self, from: data)
  }
}
