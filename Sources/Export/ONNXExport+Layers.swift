import NN

extension ONNXExport {
  /// One layer's nodes, from Stagewise's NHWC layers to ONNX's NCHW operators.
  mutating func emit(_ layer: any Layer, _ x: Value, _ prefix: String) throws(ExportError) -> Value
  {
    switch layer {
    case let linear as Linear:
      // y = x·Wᵀ + b on the sample flattened in NHWC order, as Linear reads it.
      let (w, b) = linear.parameters(store)
      let input = flattened(x)
      let weight = graph.constant("\(prefix).weight", dims: [linear.outputs, linear.inputs], w)
      let bias = graph.constant("\(prefix).bias", dims: [linear.outputs], b)
      return Value(
        name: graph.add("Gemm", [input.name, weight, bias], [.int("transB", 1)]),
        shape: linear.outputShape, layout: .vector)

    case let conv as Conv2D:
      let (w, b) = conv.parameters(store)
      let (f, k, c) = (conv.filters, conv.kernel, conv.channels)
      // W [F, k, k, C] → [F, C, k, k]
      var oihw = [Float](repeating: 0, count: w.count)
      for o in 0..<f {
        for i in 0..<k {
          for j in 0..<k {
            for ch in 0..<c {
              oihw[((o * c + ch) * k + i) * k + j] = w[((o * k + i) * k + j) * c + ch]
            }
          }
        }
      }
      let weight = graph.constant("\(prefix).weight", dims: [f, c, k, k], oihw)
      let bias = graph.constant("\(prefix).bias", dims: [f], b)
      let p = conv.padding
      let y = graph.add(
        "Conv", [nchw(x).name, weight, bias],
        [
          .ints("kernel_shape", [k, k]), .ints("strides", [conv.stride, conv.stride]),
          .ints("pads", [p, p, p, p]),
        ])
      return Value(name: y, shape: conv.outputShape, layout: .nchw)

    case let pool as MaxPool2D:
      let y = graph.add(
        "MaxPool", [nchw(x).name],
        [
          .ints("kernel_shape", [pool.size, pool.size]),
          .ints("strides", [pool.stride, pool.stride]),
        ])
      return Value(name: y, shape: pool.outputShape, layout: .nchw)

    case let pool as AveragePool2D:
      let y = graph.add(
        "AveragePool", [nchw(x).name],
        [
          .ints("kernel_shape", [pool.windowHeight, pool.windowWidth]),
          .ints("strides", [pool.stride, pool.stride]),
        ])
      return Value(name: y, shape: pool.outputShape, layout: .nchw)

    case let pool as AdaptiveAveragePool2D:
      return adaptiveAverage(pool, x, prefix)

    case is ReLU: return Value(name: graph.add("Relu", [x.name]), shape: x.shape, layout: x.layout)
    case is Tanh: return Value(name: graph.add("Tanh", [x.name]), shape: x.shape, layout: x.layout)
    case is Dropout: return x  // the identity in evaluation
    case is Flatten: return flattened(x)

    case let norm as BatchNorm:
      let s = norm.statistics(store)
      let c = norm.channels
      let input = x.shape.count == 3 ? nchw(x) : x  // the channel axis is 1
      let y = graph.add(
        "BatchNormalization",
        [
          input.name, graph.constant("\(prefix).weight", dims: [c], s.gamma),
          graph.constant("\(prefix).bias", dims: [c], s.beta),
          graph.constant("\(prefix).running_mean", dims: [c], s.mean),
          graph.constant("\(prefix).running_var", dims: [c], s.variance),
        ], [.float("epsilon", norm.epsilon)])
      return Value(name: y, shape: x.shape, layout: input.layout)

    case let block as Residual:
      let y = try emit(block.body, x, "\(prefix).body")
      let skip =
        try block.projection.map { layer throws(ExportError) in
          try emit(layer, x, "\(prefix).projection")
        } ?? x
      return Value(
        name: graph.add("Add", [y.name, converted(skip, like: y).name]), shape: y.shape,
        layout: y.layout)

    default:
      throw ExportError(
        "\(prefix) (\(layer.summary)) has no ONNX form in this exporter: add one to "
          + "ONNXExport+Layers.swift"
      )
    }
  }

  /// PyTorch-style adaptive average pooling: a global or evenly divided grid is an ONNX
  /// pooling operator; an uneven one is a MatMul with the pooling matrix (each output cell
  /// averages the input cells its window covers), which is what the layer computes.
  mutating func adaptiveAverage(_ pool: AdaptiveAveragePool2D, _ x: Value, _ prefix: String)
    -> Value
  {
    let (h, w, c, oh, ow) = (pool.height, pool.width, pool.channels, pool.outHeight, pool.outWidth)
    let input = nchw(x).name
    if oh == 1 && ow == 1 {
      return Value(
        name: graph.add("GlobalAveragePool", [input]), shape: pool.outputShape, layout: .nchw)
    }
    if h % oh == 0 && w % ow == 0 {
      let (kh, kw) = (h / oh, w / ow)
      return Value(
        name: graph.add(
          "AveragePool", [input], [.ints("kernel_shape", [kh, kw]), .ints("strides", [kh, kw])]),
        shape: pool.outputShape, layout: .nchw)
    }
    var matrix = [Float](repeating: 0, count: h * w * oh * ow)  // [H·W, OH·OW]
    for i in 0..<oh {
      let rows = AdaptiveAveragePool2D.window(i, h, oh)
      for j in 0..<ow {
        let cols = AdaptiveAveragePool2D.window(j, w, ow)
        let share = 1 / Float(rows.count * cols.count)
        for r in rows { for q in cols { matrix[(r * w + q) * (oh * ow) + i * ow + j] = share } }
      }
    }
    let flat = graph.add(
      "Reshape", [input, graph.constant("\(prefix).cells", integers: [0, c, h * w])])
    let pooled = graph.add(
      "MatMul", [flat, graph.constant("\(prefix).pooling", dims: [h * w, oh * ow], matrix)])
    let y = graph.add(
      "Reshape", [pooled, graph.constant("\(prefix).grid", integers: [0, c, oh, ow])])
    return Value(name: y, shape: pool.outputShape, layout: .nchw)
  }

  // MARK: - Layouts

  /// Maps in NCHW (a transpose from NHWC when needed); vectors as they are.
  mutating func nchw(_ x: Value) -> Value {
    guard x.layout == .nhwc else { return x }
    return Value(
      name: graph.add("Transpose", [x.name], [.ints("perm", [0, 3, 1, 2])]), shape: x.shape,
      layout: .nchw)
  }

  mutating func nhwc(_ x: Value) -> Value {
    guard x.layout == .nchw else { return x }
    return Value(
      name: graph.add("Transpose", [x.name], [.ints("perm", [0, 2, 3, 1])]), shape: x.shape,
      layout: .nhwc)
  }

  /// [N, n] with the sample's values in NHWC order (Stagewise's), as Linear and heads read them.
  mutating func flattened(_ x: Value) -> Value {
    guard x.layout != .vector else { return x }
    return Value(
      name: graph.add("Flatten", [nhwc(x).name], [.int("axis", 1)]), shape: [x.shape.reduce(1, *)],
      layout: .vector)
  }

  /// `x` in `target`'s layout, to be added to it (both hold the same per-sample shape).
  mutating func converted(_ x: Value, like target: Value) -> Value {
    switch (x.layout, target.layout) {
    case (.nhwc, .nchw): return nchw(x)
    case (.nchw, .nhwc): return nhwc(x)
    case (.vector, .vector), (.nhwc, .nhwc), (.nchw, .nchw): return x
    case (.vector, _):  // an encoder's vector output added to maps: [N, H·W·C] in NHWC order
      let shaped = graph.add(
        "Reshape", [x.name, graph.constant("reshape", integers: [0] + target.shape)])
      return converted(Value(name: shaped, shape: target.shape, layout: .nhwc), like: target)
    case (_, .vector): return flattened(x)
    }
  }
}
