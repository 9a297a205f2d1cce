import Testing

@testable import NN

@Suite("Layer gradients match central differences")
struct LayerGradientTests {
  @Test func linear() {
    var layout = ParameterLayout()
    let layer = Linear(name: "fc", inputs: 5, outputs: 4, layout: &layout)
    GradientCheck.check(layer, layout: layout, inputShape: [5])
  }

  @Test func linearFlattensMaps() {
    var layout = ParameterLayout()
    let layer = Linear(name: "fc", inputs: 12, outputs: 3, layout: &layout)
    GradientCheck.check(layer, layout: layout, inputShape: [2, 3, 2])
  }

  @Test(arguments: [(1, 1), (2, 0), (2, 1)])
  func conv(stride: Int, padding: Int) throws {
    var layout = ParameterLayout()
    let layer = try #require(
      Conv2D(name: "conv", inputShape: [5, 6, 2], filters: 3, kernel: 3, stride: stride, padding: padding, layout: &layout))
    GradientCheck.check(layer, layout: layout, inputShape: [5, 6, 2], batch: 2)
  }

  @Test func relu() {
    // Inputs near zero would straddle the kink; the projection keeps the check meaningful.
    GradientCheck.check(ReLU(shape: [7]), layout: ParameterLayout(), inputShape: [7], step: 1e-3)
  }

  @Test func tanh() {
    GradientCheck.check(Tanh(shape: [7]), layout: ParameterLayout(), inputShape: [7], step: 1e-3)
  }

  @Test func maxPool() throws {
    let layer = try #require(MaxPool2D(inputShape: [4, 4, 2], size: 2, stride: 2))
    GradientCheck.check(layer, layout: ParameterLayout(), inputShape: [4, 4, 2], step: 1e-3)
  }

  @Test func averagePool() throws {
    let layer = try #require(AveragePool2D(inputShape: [4, 6, 2], size: 2, stride: 2))
    GradientCheck.check(layer, layout: ParameterLayout(), inputShape: [4, 6, 2])
  }

  @Test func globalAveragePoolOnNonSquareMap() throws {
    let layer = try #require(AveragePool2D(globalOver: [3, 5, 4]))
    #expect(layer.outputShape == [1, 1, 4])
    GradientCheck.check(layer, layout: ParameterLayout(), inputShape: [3, 5, 4])
  }

  @Test(arguments: [(2, 2), (3, 2), (1, 1)])
  func adaptiveAveragePool(outHeight: Int, outWidth: Int) throws {
    let layer = try #require(AdaptiveAveragePool2D(inputShape: [7, 5, 2], outHeight: outHeight, outWidth: outWidth))
    GradientCheck.check(layer, layout: ParameterLayout(), inputShape: [7, 5, 2])
  }

  @Test func adaptivePoolWindowsCoverTheMap() {
    // 7 rows into 3 cells: 0..<3, 2..<5, 4..<7 (overlapping, as PyTorch's).
    #expect((0..<3).map { AdaptiveAveragePool2D.window($0, 7, 3) } == [0..<3, 2..<5, 4..<7])
  }

  /// Training mode: the batch's own statistics, so every input moves every output of its
  /// channel (vectors [B, C] and maps [B, H, W, C]).
  @Test(arguments: [([6], 5), ([3, 3, 2], 2)])
  func batchNorm(shape: [Int], batch: Int) {
    var layout = ParameterLayout()
    let layer = BatchNorm(name: "bn", shape: shape, layout: &layout)
    GradientCheck.check(layer, layout: layout, inputShape: shape, batch: batch, step: 1e-2)
  }

  /// Running statistics move by the momentum towards the batch's (the variance unbiased);
  /// evaluation normalises with them and changes nothing; no optimizer step touches them,
  /// weight decay included.
  @Test func batchNormRunningStatisticsAreStateNotParameters() {
    var layout = ParameterLayout()
    let layer = BatchNorm(name: "bn", shape: [2], layout: &layout)
    let store = ParameterStore(layout: layout)
    var rng = SeededGenerator(seed: 3)
    layer.initialize(store, &rng)
    let x = Tensor(shape: [4, 2], storage: [1, 10, 2, 20, 3, 30, 6, 40])
    _ = layer.forward(x, store)
    // channel 0: mean 3, biased variance 3.5, unbiased 14/3; channel 1: mean 25, unbiased 500/3
    let mean: [Float] = [0.3, 2.5], variance: [Float] = [0.9 + 0.1 * 14 / 3, 0.9 + 0.1 * 500 / 3]
    let running = Array(store.values[4..<8])
    for j in 0..<2 {
      #expect(abs(running[j] - mean[j]) <= 1e-5 * max(1, mean[j]))
      #expect(abs(running[2 + j] - variance[j]) <= 1e-5 * variance[j])
    }
    let before = store.valueArray
    let y = layer.infer(x, store)
    #expect(store.valueArray == before, "evaluation changes nothing")
    for i in 0..<4 {
      for j in 0..<2 {
        let expected = (x.storage[i * 2 + j] - mean[j]) / (variance[j] + 1e-5).squareRoot()
        #expect(abs(y.storage[i * 2 + j] - expected) <= 1e-4 * max(1, abs(expected)))
      }
    }
    var settings = OptimizerSettings()
    settings.weightDecay = 0.1
    var optimizer = Optimizer(settings)
    for i in 0..<store.count { store.gradients[i] = 1 }
    optimizer.update(store, learningRate: 0.5)
    #expect(Array(store.values[4..<8]) == running, "running statistics are not stepped")
    #expect(store.values[0] != before[0], "γ is")
  }

  /// With its mask held (the forward count reset before each pass) dropout is linear: its
  /// gradient is checked like any layer's.
  @Test func dropout() {
    var layout = ParameterLayout()
    let layer = Dropout(name: "drop", shape: [40], rate: 0.3, seed: 7, layout: &layout)
    GradientCheck.check(
      "dropout", layout: layout, inputShape: [40], initialize: layer.initialize,
      forward: { x, store in
        store.values[0] = 0
        return layer.forward(x, store)
      },
      backward: { layer.backward($0, $1, $2, inputGradient: true)! })
  }

  /// Each pass draws a new mask, dropping about p of the values and scaling the rest by
  /// 1/(1 − p); the same seed and count give the same mask; evaluation is the identity.
  @Test func dropoutMasks() {
    var layout = ParameterLayout()
    let layer = Dropout(name: "drop", shape: [1000], rate: 0.25, seed: 9, layout: &layout)
    let store = ParameterStore(layout: layout)
    let x = Tensor(shape: [4, 1000], storage: [Float](repeating: 2, count: 4000))
    let first = layer.forward(x, store).0, second = layer.forward(x, store).0
    #expect(store.values[0] == 2)
    for y in [first, second] {
      let kept = y.storage.filter { $0 != 0 }
      #expect(kept.allSatisfy { abs($0 - 2 / 0.75) < 1e-6 })
      #expect(abs(Double(kept.count) / 4000 - 0.75) < 0.03, "\(kept.count) of 4000 kept")
    }
    #expect(first.storage != second.storage)
    store.values[0] = 1
    #expect(layer.forward(x, store).0.storage == second.storage)
    #expect(layer.infer(x, store).storage == x.storage)
  }

  /// y = F(x) + x on maps (conv, relu, conv) and with a projection where F changes the shape:
  /// a strided 1×1 conv on maps, an affine map on vectors.
  @Test(arguments: ["identity", "strided", "vectors"])
  func residual(kind: String) throws {
    var layout = ParameterLayout()
    let input = kind == "vectors" ? [6] : [4, 4, 2]
    let block: Residual
    switch kind {
    case "identity":
      let a = try #require(Conv2D(name: "r.0", inputShape: input, filters: 2, kernel: 3, stride: 1, padding: 1, layout: &layout))
      let b = try #require(Conv2D(name: "r.2", inputShape: a.outputShape, filters: 2, kernel: 3, stride: 1, padding: 1, layout: &layout))
      block = Residual(body: Sequential(inputShape: input, layers: [a, Tanh(shape: a.outputShape), b]), projection: nil)
    case "strided":
      let a = try #require(Conv2D(name: "r.0", inputShape: input, filters: 3, kernel: 3, stride: 2, padding: 1, layout: &layout))
      let proj = try #require(Conv2D(name: "r.proj", inputShape: input, filters: 3, kernel: 1, stride: 2, padding: 0, layout: &layout))
      block = Residual(body: Sequential(inputShape: input, layers: [a]), projection: proj)
    default:
      let a = Linear(name: "r.0", inputs: 6, outputs: 4, layout: &layout)
      block = Residual(body: Sequential(inputShape: input, layers: [a, Tanh(shape: [4])]), projection: Linear(name: "r.proj", inputs: 6, outputs: 4, layout: &layout))
    }
    GradientCheck.check(block, layout: layout, inputShape: input, batch: 2, step: 1e-2)
    var rng = SeededGenerator(seed: 4)
    let store = ParameterStore(layout: layout)
    block.initialize(store, &rng)
    let x = GradientCheck.random([2] + input, &rng)
    let sum = zip(block.body.infer(x, store).storage, block.projection.map { $0.infer(x, store) }?.storage ?? x.storage).map(+)
    #expect(block.forward(x, store).0.storage == sum && block.infer(x, store).storage == sum)
  }

  /// A channel far from zero with a small spread (1000 ± 0.02) still normalises to mean 0
  /// and variance 1: the statistics do not cancel away.
  @Test func batchNormOfAnOffsetChannel() {
    var layout = ParameterLayout()
    let layer = BatchNorm(name: "bn", shape: [1], layout: &layout)
    let store = ParameterStore(layout: layout)
    var rng = SeededGenerator(seed: 1)
    layer.initialize(store, &rng)
    let y = layer.forward(Tensor(shape: [4, 1], storage: [999.98, 999.99, 1000.01, 1000.02]), store).0.storage
    let mean = y.reduce(0, +) / 4
    let variance = y.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / 4
    #expect(abs(mean) < 1e-3 && abs(variance - 1) < 0.05, "\(y)")
  }

  @Test func flatten() {
    GradientCheck.check(Flatten(inputShape: [2, 2, 3]), layout: ParameterLayout(), inputShape: [2, 2, 3])
  }

  @Test func sequentialConvNet() throws {
    var layout = ParameterLayout()
    let conv = try #require(Conv2D(name: "c", inputShape: [6, 6, 1], filters: 4, kernel: 3, stride: 1, padding: 1, layout: &layout))
    let pool = try #require(MaxPool2D(inputShape: conv.outputShape, size: 2, stride: 2))
    let fc = Linear(name: "fc", inputs: 3 * 3 * 4, outputs: 5, layout: &layout)
    let net = Sequential(inputShape: [6, 6, 1], layers: [conv, ReLU(shape: conv.outputShape), pool, fc])
    GradientCheck.check(
      "conv net", layout: layout, inputShape: [6, 6, 1], batch: 2, step: 1e-3,
      initialize: net.initialize, forward: net.forward,
      backward: { net.backward($0, $1, $2, inputGradient: true)! })
  }

  @Test func maxPoolRoutesToTheMaximum() {
    let layer = MaxPool2D(inputShape: [2, 2, 1], size: 2, stride: 2)!
    let store = ParameterStore(layout: ParameterLayout())
    let x = Tensor(shape: [1, 2, 2, 1], storage: [1, 4, 3, 2])
    let (y, cache) = layer.forward(x, store)
    #expect(y.storage == [4])
    let dx = layer.backward(Tensor(shape: [1, 1, 1, 1], storage: [5]), cache, store, inputGradient: true)!
    #expect(dx.storage == [0, 5, 0, 0])
  }

  @Test func convMatchesADirectConvolution() {
    var layout = ParameterLayout()
    let conv = Conv2D(name: "c", inputShape: [4, 4, 2], filters: 3, kernel: 3, stride: 1, padding: 1, layout: &layout)!
    let store = ParameterStore(layout: layout)
    var rng = SeededGenerator(seed: 3)
    conv.initialize(store, &rng)
    for f in 0..<3 { store.values[conv.affine.biasOffset + f] = Float(f) * 0.5 }
    let x = GradientCheck.random([2, 4, 4, 2], &rng)
    let y = conv.forward(x, store).0
    // y[b, i, j, f] = b_f + Σ_{kh, kw, c} W[f, kh, kw, c] · x[b, i + kh − 1, j + kw − 1, c]
    for b in 0..<2 { for i in 0..<4 { for j in 0..<4 { for f in 0..<3 {
      var sum = Double(store.values[conv.affine.biasOffset + f])
      for kh in 0..<3 { for kw in 0..<3 { for c in 0..<2 {
        let (ii, jj) = (i + kh - 1, j + kw - 1)
        guard (0..<4).contains(ii), (0..<4).contains(jj) else { continue }
        let w = store.values[conv.affine.weightOffset + ((f * 3 + kh) * 3 + kw) * 2 + c]
        sum += Double(w) * Double(x.storage[((b * 4 + ii) * 4 + jj) * 2 + c])
      } } }
      let got = y.storage[((b * 4 + i) * 4 + j) * 3 + f]
      #expect(abs(Double(got) - sum) < 1e-4)
    } } } }
  }
}


@Suite("Convolution engines agree")
struct ConvolutionEngineTests {
  /// oneDNN's kernels and im2col + sgemm compute the same forward pass and the same
  /// gradients (to float rounding) on model B's shapes.
  @Test(arguments: [([28, 28, 1], 32, 1), ([14, 14, 32], 64, 1), ([7, 7, 64], 128, 1), ([9, 9, 8], 16, 2)])
  func oneDNNMatchesIm2col(inputShape: [Int], filters: Int, stride: Int) throws {
    var layout = ParameterLayout()
    let fast = try #require(Conv2D(name: "c", inputShape: inputShape, filters: filters, kernel: 3, stride: stride, padding: 1, layout: &layout))
    var layout2 = ParameterLayout()
    let slow = try #require(
      Conv2D(name: "c", inputShape: inputShape, filters: filters, kernel: 3, stride: stride, padding: 1, layout: &layout2, engine: .im2col))
    let batch = 5
    try #require(fast.convolution(batch: batch) != nil, "oneDNN has no fast kernel for \(inputShape) here")
    let store = ParameterStore(layout: layout)
    var rng = SeededGenerator(seed: 3)
    fast.initialize(store, &rng)
    for i in 0..<filters { store.value(at: fast.affine.biasOffset)[i] = Float(i) * 0.01 }
    let x = Tensor(shape: [batch] + inputShape, storage: (0..<(batch * inputShape.reduce(1, *))).map { _ in Float(rng.nextNormal()) })
    let (y1, c1) = fast.forward(x, store)
    let (y2, c2) = slow.forward(x, store)
    #expect(y1.shape == y2.shape)
    let scale = y2.storage.map(abs).max()!
    #expect(zip(y1.storage, y2.storage).allSatisfy { abs($0 - $1) <= 1e-5 * scale })
    let dy = Tensor(shape: y1.shape, storage: (0..<y1.count).map { _ in Float(rng.nextNormal()) })
    store.zeroGradients()
    let dx1 = try #require(fast.backward(dy, c1, store, inputGradient: true))
    let g1 = Array(store.gradients.prefix(store.count))
    store.zeroGradients()
    let dx2 = try #require(slow.backward(dy, c2, store, inputGradient: true))
    let g2 = Array(store.gradients.prefix(store.count))
    let dxScale = dx2.storage.map(abs).max()!, gScale = g2.map(abs).max()!
    #expect(zip(dx1.storage, dx2.storage).allSatisfy { abs($0 - $1) <= 1e-5 * dxScale })
    #expect(zip(g1, g2).allSatisfy { abs($0 - $1) <= 1e-4 * gScale })
    // Gradients add (+=) into the store, whatever the engine.
    _ = fast.backward(dy, c1, store, inputGradient: false)
    let twice = Array(store.gradients.prefix(store.count))
    #expect(zip(twice, zip(g1, g2)).allSatisfy { abs($0 - ($1.0 + $1.1)) <= 1e-4 * gScale })
  }
}
