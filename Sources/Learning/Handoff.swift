import Datasets
import NN

/// What travels into a stage besides its input activations and the labels, by method — one
/// definition for the daemon, which sends it between processes (Runtime's `StageHandoff`), and
/// the one-process trainer, which hands it over in memory:
/// - SID: the previous stage's belief, softmax of its head (stages after the first);
/// - ContSup with the E context: the batch's input images (every stage);
/// - ContSup with the R1 context: the previous stage's augmented input (stages after the first).
public struct Handoff: Codable, Sendable, Equatable {
  public var belief = false
  public var images = false
  /// The previous stage's input shape, when its augmented input arrives as context (R1).
  public var skip: [Int]?
  /// How the activations and the augmented input travel (`daemon.wireFormat`): what the
  /// stage reads is what that format keeps of them, in one process too.
  public var format: ValueFormat = .f32

  public init(
    belief: Bool = false, images: Bool = false, skip: [Int]? = nil, format: ValueFormat = .f32
  ) {
    (self.belief, self.images, self.skip, self.format) = (belief, images, skip, format)
  }

  /// What `config`'s method sends into stage `k`; `previousInputShape` is stage k − 1's.
  public static func into(stage k: Int, of config: RunConfig, previousInputShape: [Int]?) -> Handoff
  {
    let contsup = config.method == .contsup
    return Handoff(
      belief: config.method == .sid && k > 0,
      images: contsup && config.contsup.mode != .R1,
      skip: contsup && config.contsup.mode != .E && k > 0 ? previousInputShape : nil,
      format: config.daemon.wireFormat)
  }

  /// The stage's input: the previous stage's detached output (the batch's images at stage 0)
  /// and what this stage's method needs.
  public func input(after previous: Stage.Pass?, images: Tensor, labels: [Int32]) -> Stage.Input {
    input(
      activations: previous?.activations ?? images, of: previous, images: images, labels: labels)
  }

  /// The stage's input from the previous stage's `activations` (and its `pass`, when the
  /// method sends more of it than the activations).
  public func input(activations: Tensor, of previous: Stage.Pass?, images: Tensor, labels: [Int32])
    -> Stage.Input
  {
    Stage.Input(
      x: format.roundTrip(activations), labels: labels, belief: belief ? previous?.belief : nil,
      image: self.images ? images : nil,
      previousInput: skip != nil ? (previous?.augmentedInput).map(format.roundTrip) : nil)
  }
}

extension Handoff {
  public func input(after previous: Stage.Pass?, batch: Batch) -> Stage.Input {
    input(after: previous, images: batch.images, labels: batch.labels)
  }
}

extension RunConfig {
  /// The handoff into each stage, given every stage's input shape.
  public func handoffs(inputShapes: [[Int]]) -> [Handoff] {
    inputShapes.indices.map {
      Handoff.into(stage: $0, of: self, previousInputShape: $0 > 0 ? inputShapes[$0 - 1] : nil)
    }
  }

  /// The handoff into each of `stages` (built from this config).
  public func handoffs(_ stages: [Stage]) -> [Handoff] {
    handoffs(inputShapes: stages.map(\.inputShape))
  }
}
