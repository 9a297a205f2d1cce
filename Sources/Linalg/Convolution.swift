import CDNNL

/// The shape of a 2-D convolution over NHWC maps with OHWI weights (Stagewise's layouts).
public struct ConvolutionShape: Hashable, Sendable {
  public var batch: Int, height: Int, width: Int, channels: Int
  public var filters: Int, kernel: Int, stride: Int, padding: Int
  public var outHeight: Int { (height + 2 * padding - kernel) / stride + 1 }
  public var outWidth: Int { (width + 2 * padding - kernel) / stride + 1 }

  public init(
    batch: Int, height: Int, width: Int, channels: Int, filters: Int, kernel: Int, stride: Int,
    padding: Int
  ) {
    (self.batch, self.height, self.width, self.channels) = (batch, height, width, channels)
    (self.filters, self.kernel, self.stride, self.padding) = (filters, kernel, stride, padding)
  }
}

/// One convolution shape's oneDNN primitives: forward, backward to the input, backward to the
/// weights and bias. Activations stay in Stagewise's NHWC; the weights are reordered between
/// the store's OHWI and the layout each primitive's JIT kernel wants (weights are small), so
/// oneDNN picks its AVX-512/AVX2 kernels instead of its slow reference code.
///
/// Not thread-safe: one instance serves one stage's thread (a layer keeps one per batch size).
public final class Convolution {
  public let shape: ConvolutionShape
  /// The implementation oneDNN chose for the forward pass (`brgconv:avx512_core`, …).
  public let implementation: String

  let engine: dnnl_engine_t, stream: dnnl_stream_t
  var primitives: [OpaquePointer] = [], descriptors: [OpaquePointer] = [],
    memories: [OpaquePointer] = []
  let forwardPrimitive: dnnl_primitive_t, dataPrimitive: dnnl_primitive_t,
    weightsPrimitive: dnnl_primitive_t
  // User-layout memories whose data handles point at the caller's buffers at each call.
  let src: dnnl_memory_t, dst: dnnl_memory_t, diffSrc: dnnl_memory_t, diffDst: dnnl_memory_t
  let userWeights: dnnl_memory_t, bias: dnnl_memory_t, diffBias: dnnl_memory_t,
    userDiffWeights: dnnl_memory_t
  // Weights in each primitive's layout, with the reorders that fill them (nil: same layout).
  let forwardWeights: dnnl_memory_t, dataWeights: dnnl_memory_t, diffWeights: dnnl_memory_t
  let toForward: dnnl_primitive_t?, toData: dnnl_primitive_t?, fromDiff: dnnl_primitive_t?
  let diffWeightsScratch: UnsafeMutableBufferPointer<Float>,
    diffBiasScratch: UnsafeMutableBufferPointer<Float>

  /// Nil when oneDNN has no fast kernel for this shape here (only its reference code), or
  /// cannot make one: the caller then keeps its own im2col path.
  public init?(_ shape: ConvolutionShape) {
    guard let (engine, stream) = Self.context else { return nil }
    (self.engine, self.stream, self.shape) = (engine, stream, shape)
    // What this init makes, destroyed by deinit (or here, if the init fails).
    var primitives: [OpaquePointer] = []
    var descriptors: [OpaquePointer] = []
    var memories: [OpaquePointer] = []
    var failed = false
    func check(_ status: dnnl_status_t) { if status != dnnl_success { failed = true } }
    func desc(_ dims: [Int], _ tag: dnnl_format_tag_t) -> dnnl_memory_desc_t {
      var md = dnnl_memory_desc_t()
      var d = dims.map { dnnl_dim_t($0) }
      check(dnnl_memory_desc_init_by_tag(&md, Int32(dims.count), &d, dnnl_f32, tag))
      return md
    }
    let s = shape
    var srcMD = desc([s.batch, s.channels, s.height, s.width], dnnl_nhwc)
    var dstMD = desc([s.batch, s.filters, s.outHeight, s.outWidth], dnnl_nhwc)
    var anyWeightsMD = desc([s.filters, s.channels, s.kernel, s.kernel], dnnl_format_tag_any)
    var userWeightsMD = desc([s.filters, s.channels, s.kernel, s.kernel], dnnl_ohwi)
    var biasMD = desc([s.filters], dnnl_x)
    var strides: [dnnl_dim_t] = [dnnl_dim_t(s.stride), dnnl_dim_t(s.stride)]
    var padding: [dnnl_dim_t] = [dnnl_dim_t(s.padding), dnnl_dim_t(s.padding)]
    var rightPadding = padding
    func primitive(_ pd: dnnl_primitive_desc_t?) -> dnnl_primitive_t? {
      guard let pd, !failed else { return nil }
      var p: dnnl_primitive_t?
      check(dnnl_primitive_create(&p, pd))
      if let p { primitives.append(p) }
      return p
    }
    func primitiveDescriptor(_ op: UnsafeRawPointer, hint: dnnl_primitive_desc_t?)
      -> dnnl_primitive_desc_t?
    {
      guard !failed else { return nil }
      var pd: dnnl_primitive_desc_t?
      check(dnnl_primitive_desc_create(&pd, op, nil, engine, hint))
      if let pd { descriptors.append(pd) }
      return pd
    }
    var forwardOp = dnnl_convolution_desc_t()
    var dataOp = dnnl_convolution_desc_t()
    var weightsOp = dnnl_convolution_desc_t()
    check(
      dnnl_convolution_forward_desc_init(
        &forwardOp, dnnl_forward_training, dnnl_convolution_direct, &srcMD, &anyWeightsMD, &biasMD,
        &dstMD, &strides, &padding, &rightPadding))
    let forwardPD = primitiveDescriptor(&forwardOp, hint: nil)
    check(
      dnnl_convolution_backward_data_desc_init(
        &dataOp, dnnl_convolution_direct, &srcMD, &anyWeightsMD, &dstMD, &strides, &padding,
        &rightPadding))
    let dataPD = primitiveDescriptor(&dataOp, hint: forwardPD)
    check(
      dnnl_convolution_backward_weights_desc_init(
        &weightsOp, dnnl_convolution_direct, &srcMD, &anyWeightsMD, &biasMD, &dstMD, &strides,
        &padding, &rightPadding))
    let weightsPD = primitiveDescriptor(&weightsOp, hint: forwardPD)
    var info: UnsafePointer<CChar>?
    if let forwardPD {
      check(dnnl_primitive_desc_query(forwardPD, dnnl_query_impl_info_str, 0, &info))
    }
    implementation = info.map { String(cString: $0) } ?? "none"
    guard !failed, !implementation.hasPrefix("ref"), let forwardPD, let dataPD, let weightsPD,
      let f = primitive(forwardPD), let d = primitive(dataPD), let w = primitive(weightsPD)
    else {
      Self.destroy(primitives, descriptors, [])
      return nil
    }
    (forwardPrimitive, dataPrimitive, weightsPrimitive) = (f, d, w)

    func memory(_ md: UnsafePointer<dnnl_memory_desc_t>, owned: Bool) -> dnnl_memory_t {
      var m: dnnl_memory_t?
      // DNNL_MEMORY_ALLOCATE is (void *)-1: the library allocates; nil (DNNL_MEMORY_NONE): bound
      // later.
      check(
        dnnl_memory_create(
          &m, md, engine, owned ? UnsafeMutableRawPointer(bitPattern: UInt.max) : nil))
      memories.append(m!)
      return m!
    }
    func reorder(_ from: UnsafePointer<dnnl_memory_desc_t>, _ to: UnsafePointer<dnnl_memory_desc_t>)
      -> dnnl_primitive_t?
    {
      guard dnnl_memory_desc_equal(from, to) == 0 else { return nil }
      var pd: dnnl_primitive_desc_t?
      check(dnnl_reorder_primitive_desc_create(&pd, from, engine, to, engine, nil))
      guard let pd else { return nil }
      descriptors.append(pd)
      return primitive(pd)
    }
    src = memory(&srcMD, owned: false)
    diffSrc = memory(&srcMD, owned: false)
    dst = memory(&dstMD, owned: false)
    diffDst = memory(&dstMD, owned: false)
    userWeights = memory(&userWeightsMD, owned: false)
    userDiffWeights = memory(&userWeightsMD, owned: false)
    bias = memory(&biasMD, owned: false)
    diffBias = memory(&biasMD, owned: false)
    let forwardWeightsMD = dnnl_primitive_desc_query_md(forwardPD, dnnl_query_weights_md, 0)!
    let dataWeightsMD = dnnl_primitive_desc_query_md(dataPD, dnnl_query_weights_md, 0)!
    let diffWeightsMD = dnnl_primitive_desc_query_md(weightsPD, dnnl_query_diff_weights_md, 0)!
    forwardWeights = memory(forwardWeightsMD, owned: true)
    dataWeights = memory(dataWeightsMD, owned: true)
    diffWeights = memory(diffWeightsMD, owned: true)
    toForward = reorder(&userWeightsMD, forwardWeightsMD)
    toData = reorder(&userWeightsMD, dataWeightsMD)
    fromDiff = reorder(diffWeightsMD, &userWeightsMD)
    let weightCount = s.filters * s.kernel * s.kernel * s.channels
    diffWeightsScratch = .allocate(capacity: weightCount)
    diffBiasScratch = .allocate(capacity: s.filters)
    (self.primitives, self.descriptors, self.memories) = (primitives, descriptors, memories)
    if failed { return nil }  // deinit releases what was made
  }

  deinit {
    Self.destroy(primitives, descriptors, memories)
    diffWeightsScratch.deallocate()
    diffBiasScratch.deallocate()
  }

  static func destroy(
    _ primitives: [OpaquePointer], _ descriptors: [OpaquePointer], _ memories: [OpaquePointer]
  ) {
    for p in primitives { dnnl_primitive_destroy(p) }
    for d in descriptors { dnnl_primitive_desc_destroy(d) }
    for m in memories { dnnl_memory_destroy(m) }
  }

  /// The CPU engine and its stream, made once per process (nil if oneDNN cannot start).
  nonisolated(unsafe) static let context: (dnnl_engine_t, dnnl_stream_t)? = {
    var engine: dnnl_engine_t?
    var stream: dnnl_stream_t?
    guard dnnl_engine_create(&engine, dnnl_cpu, 0) == dnnl_success, let engine,
      dnnl_stream_create(&stream, engine, dnnl_stream_default_flags.rawValue) == dnnl_success,
      let stream
    else { return nil }
    return (engine, stream)
  }()

  func run(_ primitive: dnnl_primitive_t, _ args: [(Int32, dnnl_memory_t)]) {
    let list = args.map { dnnl_exec_arg_t(arg: $0.0, memory: $0.1) }
    let status = list.withUnsafeBufferPointer {
      dnnl_primitive_execute(primitive, stream, Int32($0.count), $0.baseAddress)
    }
    precondition(status == dnnl_success, "oneDNN convolution failed (status \(status.rawValue))")
    precondition(dnnl_stream_wait(stream) == dnnl_success, "oneDNN stream failed")
  }

  func bind(_ memory: dnnl_memory_t, _ pointer: UnsafeRawPointer) {
    dnnl_memory_set_data_handle(memory, UnsafeMutableRawPointer(mutating: pointer))
  }

  func weights(
    _ user: UnsafePointer<Float>, into target: dnnl_memory_t, with reorder: dnnl_primitive_t?
  ) -> dnnl_memory_t {
    bind(userWeights, user)
    guard let reorder else { return userWeights }
    run(reorder, [(DNNL_ARG_FROM, userWeights), (DNNL_ARG_TO, target)])
    return target
  }

  /// y[B, OH, OW, F] = conv(x[B, H, W, C], w[F, k, k, C]) + b[F].
  public func forward(
    x: UnsafePointer<Float>, weights w: UnsafePointer<Float>, bias b: UnsafePointer<Float>,
    y: UnsafeMutablePointer<Float>
  ) {
    let wm = weights(w, into: forwardWeights, with: toForward)
    bind(src, x)
    bind(bias, b)
    bind(dst, y)
    run(
      forwardPrimitive,
      [(DNNL_ARG_SRC, src), (DNNL_ARG_WEIGHTS, wm), (DNNL_ARG_BIAS, bias), (DNNL_ARG_DST, dst)])
  }

  /// dx[B, H, W, C] = ∂L/∂x from dy[B, OH, OW, F] (written, not added).
  public func backwardData(
    dy: UnsafePointer<Float>, weights w: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>
  ) {
    let wm = weights(w, into: dataWeights, with: toData)
    bind(diffDst, dy)
    bind(diffSrc, dx)
    run(
      dataPrimitive,
      [(DNNL_ARG_DIFF_DST, diffDst), (DNNL_ARG_WEIGHTS, wm), (DNNL_ARG_DIFF_SRC, diffSrc)])
  }

  /// dw[F, k, k, C] += ∂L/∂w and db[F] += ∂L/∂b from x and dy.
  public func backwardWeights(
    x: UnsafePointer<Float>, dy: UnsafePointer<Float>, dw: UnsafeMutablePointer<Float>,
    db: UnsafeMutablePointer<Float>
  ) {
    bind(src, x)
    bind(diffDst, dy)
    bind(diffBias, diffBiasScratch.baseAddress!)
    let target = fromDiff == nil ? userDiffWeights : diffWeights
    if fromDiff == nil { bind(userDiffWeights, diffWeightsScratch.baseAddress!) }
    run(
      weightsPrimitive,
      [
        (DNNL_ARG_SRC, src), (DNNL_ARG_DIFF_DST, diffDst), (DNNL_ARG_DIFF_WEIGHTS, target),
        (DNNL_ARG_DIFF_BIAS, diffBias),
      ])
    if let fromDiff {
      bind(userDiffWeights, diffWeightsScratch.baseAddress!)
      run(fromDiff, [(DNNL_ARG_FROM, diffWeights), (DNNL_ARG_TO, userDiffWeights)])
    }
    for i in 0..<diffWeightsScratch.count { dw[i] += diffWeightsScratch[i] }
    for i in 0..<diffBiasScratch.count { db[i] += diffBiasScratch[i] }
  }
}
