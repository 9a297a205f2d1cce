/// A marker in the stream of batches: it closes a phase at each stage as it passes, in order
/// with the batches in front of it. On the wire it is a MARKER message whose flags name the
/// kind (`Wire.MarkerFlag`).
public struct Marker: Sendable, Equatable {
  public enum Kind: Sendable, Equatable, CaseIterable {
    /// The epoch's training batches are all in front of it: save the epoch's cut, report.
    case trainEnd
    /// The epoch's evaluation batches are all in front of it: report.
    case evalEnd
    /// Mid-epoch: save a cut; `batchesDone` of the epoch's training batches are in front.
    case checkpoint
  }

  public var kind: Kind
  public var epoch: Int
  public var batchesDone: Int

  public init(_ kind: Kind, epoch: Int, batchesDone: Int = 0) {
    (self.kind, self.epoch, self.batchesDone) = (kind, epoch, batchesDone)
  }

  /// Whether the stage must have its owed feedback before it passes this marker (the
  /// weights it saves and evaluates have then trained on every batch in front of it).
  public var saves: Bool { kind != .evalEnd }
}

/// What a stage needs to know of a batch besides its tensors: its place in the stream, its
/// place in its batch (GPipe), and which stage trains (`sequential`).
public struct BatchTag: Sendable, Equatable {
  public var sequence: UInt64
  /// Micro-batch `microIndex` of `microCount` (1: the whole batch).
  public var microIndex = 0
  public var microCount = 1
  /// The micro-batch's share of its batch's loss (nil: the whole batch).
  public var share: Float?
  /// Under `sequential`: the one stage that trains (nil: every stage).
  public var activeStage: Int?

  public init(
    sequence: UInt64, microIndex: Int = 0, microCount: Int = 1, share: Float? = nil,
    activeStage: Int? = nil
  ) {
    (self.sequence, self.microIndex, self.microCount) = (sequence, microIndex, microCount)
    (self.share, self.activeStage) = (share, activeStage)
  }
}
