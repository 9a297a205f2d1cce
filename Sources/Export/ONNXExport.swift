import Datasets
import Learning
import NN

/// Why a run could not be exported, and what to do.
public struct ExportError: Error, CustomStringConvertible, Sendable {
  public var description: String
  public init(_ description: String) { self.description = description }
}

/// A trained network's inference graph as an ONNX model: every stage's body (and ContSup's
/// context encoders, SID's belief chain, the kernel method's normalised features — what the
/// stages compute when they evaluate) and the last stage's head, in the default opset 17.
///
/// The input `images` is [N, H, W, C] float: the values as the data file stores them (bytes
/// as 0…255); the graph normalises them as training did, and runs its convolutions in NCHW.
/// The output `logits` is [N, classes]; with `allHeads`, `logits_stage_K` for every stage
/// whose head evaluation scores.
public struct ONNXExport {
  /// A value in the graph, its per-sample shape in Stagewise's terms ([H, W, C] or [n]) and
  /// how its maps are laid out.
  struct Value {
    enum Layout { case nhwc, nchw, vector }
    var name: String
    var shape: [Int]
    var layout: Layout
  }

  var graph = ONNXGraph()
  let stages: [Stage]
  let config: RunConfig
  /// The parameters of the stage being written.
  var store: ParameterStore

  init(stages: [Stage], config: RunConfig) {
    (self.stages, self.config, store) = (stages, config, stages[0].store)
  }

  /// The model's bytes. `byteImages`: the data stores bytes (normalised from value / 255).
  public static func model(
    stages: [Stage], config: RunConfig, sampleShape: [Int], normalisation: ImageNormalisation,
    byteImages: Bool, allHeads: Bool,
    producerVersion: String
  ) throws(ExportError) -> [UInt8] {
    var export = ONNXExport(stages: stages, config: config)
    try export.build(
      sampleShape: sampleShape, normalisation: normalisation, byteImages: byteImages,
      allHeads: allHeads)
    let doc =
      "Stagewise \(config.method.rawValue), \(stages.count) stages. Input images: [N, H, W, C] "
      + "float, the stored values (bytes as 0…255); output logits [N, classes]."
    return export.graph.encoded(producerVersion: producerVersion, documentation: doc)
  }

  mutating func build(
    sampleShape: [Int], normalisation: ImageNormalisation, byteImages: Bool, allHeads: Bool
  ) throws(ExportError) {
    let channels = sampleShape[2]
    graph.inputs = [.init(name: "images", sampleShape: sampleShape)]
    // x = v · 1/(range·std_c) − mean_c/std_c, the constants broadcast over the last (channel) axis.
    let pick = { (values: [Float], c: Int) in values.count == 1 ? values[0] : values[c] }
    let range: Float = byteImages ? 255 : 1
    let scale = graph.constant(
      "input_scale", dims: [channels],
      (0..<channels).map { 1 / (range * pick(normalisation.std, $0)) })
    let shift = graph.constant(
      "input_shift", dims: [channels],
      (0..<channels).map { -pick(normalisation.mean, $0) / pick(normalisation.std, $0) })
    let images = Value(
      name: graph.add("Add", [graph.add("Mul", ["images", scale]), shift]), shape: sampleShape,
      layout: .nhwc)

    var previous: (activations: Value, augmented: Value, belief: Value?)?
    var lastLogits: String?
    for stage in stages {
      store = stage.store
      let prefix = "stage\(stage.index)"
      var z = previous?.activations ?? images
      for (k, (source, net)) in stage.encoders.enumerated() {
        let context = source == .image ? images : previous!.augmented
        let e = try emit(net, context, "\(prefix).encoder\(k)")
        z = Value(
          name: graph.add("Add", [z.name, converted(e, like: z).name]), shape: z.shape,
          layout: z.layout)
      }
      let h = try emit(stage.body, z, "\(prefix).body")
      var activations = h
      if stage.objective == .kernel {  // ϕ = h / ‖h‖ per sample
        let norm = graph.add(
          "ReduceL2", [h.name], [.ints("axes", Array(1...h.shape.count)), .int("keepdims", 1)])
        activations = Value(
          name: graph.add("Div", [h.name, norm]), shape: h.shape, layout: h.layout)
      }
      var belief: Value?
      let isLast = stage.index == stages.count - 1
      if let head = stage.head,
        isSID(stage) || isLast || (allHeads && config.scoresHead(ofStage: stage.index))
      {
        let logits = try emitHead(head, h, belief: previous?.belief, "\(prefix).head")
        if isSID(stage) {
          belief = Value(
            name: graph.add("Softmax", [logits], [.int("axis", 1)]), shape: [stage.classes],
            layout: .vector)
        }
        if allHeads && config.scoresHead(ofStage: stage.index) && !isLast {
          _ = graph.add("Identity", [logits], name: "logits_stage_\(stage.index)")
          graph.outputs.append(
            .init(name: "logits_stage_\(stage.index)", sampleShape: [stage.classes]))
        }
        if isLast { lastLogits = logits }
      }
      previous = (activations, z, belief)
    }
    guard let lastLogits else {
      throw ExportError("the last stage has no head: there is nothing to predict with")
    }
    _ = graph.add("Identity", [lastLogits], name: "logits")
    graph.outputs.insert(.init(name: "logits", sampleShape: [stages.last!.classes]), at: 0)
  }

  func isSID(_ stage: Stage) -> Bool { if case .sid = stage.objective { true } else { false } }

  /// The head's logits: its feature layers, flattened, with the previous belief appended when
  /// it reads one (uniform before the first stage), then its classifier.
  mutating func emitHead(_ head: Head, _ h: Value, belief: Value?, _ prefix: String)
    throws(ExportError) -> String
  {
    var f = flattened(try emit(head.features, h, "\(prefix).features"))
    if head.beliefWidth > 0 {
      let b: String
      if let belief {
        b = belief.name
        // uniform: 0·f + 1/C, exactly 1/C for every sample (a Gemm keeps the batch dimension)
      } else {
        let (c, n) = (head.beliefWidth, f.shape[0])
        let zero = graph.constant(
          "\(prefix).zero", dims: [c, n], [Float](repeating: 0, count: c * n))
        let uniform = graph.constant(
          "\(prefix).uniform", dims: [c], [Float](repeating: 1 / Float(c), count: c))
        b = graph.add("Gemm", [f.name, zero, uniform], [.int("transB", 1)])
      }
      f = Value(
        name: graph.add("Concat", [f.name, b], [.int("axis", 1)]),
        shape: [f.shape[0] + head.beliefWidth], layout: .vector)
    }
    return try emit(head.classifier, f, "\(prefix).classifier").name
  }

  mutating func emit(_ net: Sequential, _ x: Value, _ prefix: String) throws(ExportError) -> Value {
    var v = x
    for (i, layer) in net.layers.enumerated() { v = try emit(layer, v, "\(prefix).\(i)") }
    return v
  }

}
