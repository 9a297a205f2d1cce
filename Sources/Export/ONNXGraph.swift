/// An ONNX model under construction: nodes in order, named initializers, the graph's inputs
/// and outputs; `encoded` writes the ModelProto (IR version 8, the default opset 17).
struct ONNXGraph {
  static let opset = 17
  static let irVersion = 8

  enum Attribute {
    case int(String, Int)
    case ints(String, [Int])
    case float(String, Float)
  }

  struct Node {
    var op: String
    var inputs: [String]
    var output: String
    var attributes: [Attribute]
  }

  /// A float tensor (or, for shapes, int64) stored in the file.
  struct Initializer {
    var name: String
    var dims: [Int]
    var floats: [Float]?
    var integers: [Int]?
  }

  /// A graph input or output: float, the first dimension the batch (`N`).
  struct Port {
    var name: String
    var sampleShape: [Int]
  }

  private(set) var nodes: [Node] = []
  private(set) var initializers: [Initializer] = []
  var inputs: [Port] = []
  var outputs: [Port] = []
  private var counter = 0

  /// A fresh value name, `hint` followed by a number.
  private mutating func fresh(_ hint: String) -> String {
    counter += 1
    return "\(hint)_\(counter)"
  }

  /// Adds `op` reading `inputs`; returns its output's name.
  mutating func add(
    _ op: String, _ inputs: [String], _ attributes: [Attribute] = [], name: String? = nil
  ) -> String {
    let output = name ?? fresh(op.lowercased())
    nodes.append(Node(op: op, inputs: inputs, output: output, attributes: attributes))
    return output
  }

  /// A float constant of shape `dims`; returns its name.
  mutating func constant(_ hint: String, dims: [Int], _ values: [Float]) -> String {
    precondition(values.count == dims.reduce(1, *), "\(hint): \(values.count) values for \(dims)")
    let name = fresh(hint)
    initializers.append(Initializer(name: name, dims: dims, floats: values))
    return name
  }

  /// An int64 constant (a shape for Reshape); returns its name.
  mutating func constant(_ hint: String, integers: [Int]) -> String {
    let name = fresh(hint)
    initializers.append(Initializer(name: name, dims: [integers.count], integers: integers))
    return name
  }

  /// The ModelProto's bytes.
  func encoded(producerVersion: String, documentation: String) -> [UInt8] {
    var graph = ProtobufMessage()
    for node in nodes { graph.message(1, Self.encode(node)) }  // GraphProto.node
    graph.string(2, "stagewise")  // name
    for initializer in initializers { graph.message(5, Self.encode(initializer)) }
    graph.string(10, documentation)  // doc_string
    for port in inputs { graph.message(11, Self.encode(port)) }
    for port in outputs { graph.message(12, Self.encode(port)) }

    var opset = ProtobufMessage()
    opset.string(1, "")  // the default domain
    opset.int(2, Self.opset)
    var model = ProtobufMessage()
    model.int(1, Self.irVersion)  // ModelProto.ir_version
    model.string(2, "stagewise")  // producer_name
    model.string(3, producerVersion)
    model.message(7, graph)
    model.message(8, opset)  // opset_import
    return model.bytes
  }

  static func encode(_ node: Node) -> ProtobufMessage {
    var m = ProtobufMessage()
    for input in node.inputs { m.string(1, input) }
    m.string(2, node.output)
    m.string(3, node.output)  // the node's name: its output's
    m.string(4, node.op)
    for attribute in node.attributes {
      var a = ProtobufMessage()
      switch attribute {
      case .float(let name, let value):
        a.string(1, name)
        a.float(2, value)
        a.int(20, 1)  // AttributeType FLOAT
      case .int(let name, let value):
        a.string(1, name)
        a.int(3, value)
        a.int(20, 2)  // INT
      case .ints(let name, let values):
        a.string(1, name)
        a.ints(8, values)
        a.int(20, 7)  // INTS
      }
      m.message(5, a)
    }
    return m
  }

  static func encode(_ initializer: Initializer) -> ProtobufMessage {
    var t = ProtobufMessage()
    t.ints(1, initializer.dims)  // TensorProto.dims
    if let floats = initializer.floats {
      t.int(2, 1)  // data_type FLOAT
      t.string(8, initializer.name)
      // raw_data
      t.bytes(9, floats.flatMap { v in withUnsafeBytes(of: v.bitPattern.littleEndian, Array.init) })
    } else {
      t.int(2, 7)  // INT64
      t.string(8, initializer.name)
      t.bytes(
        9,
        (initializer.integers ?? []).flatMap { v in
          withUnsafeBytes(of: Int64(v).littleEndian, Array.init)
        })
    }
    return t
  }

  /// A ValueInfoProto: float tensor [N, sampleShape…].
  static func encode(_ port: Port) -> ProtobufMessage {
    var shape = ProtobufMessage()
    var batch = ProtobufMessage()
    batch.string(2, "N")  // dim_param
    shape.message(1, batch)
    for d in port.sampleShape {
      var dim = ProtobufMessage()
      dim.int(1, d)  // dim_value
      shape.message(1, dim)
    }
    var tensor = ProtobufMessage()
    tensor.int(1, 1)  // elem_type FLOAT
    tensor.message(2, shape)
    var type = ProtobufMessage()
    type.message(1, tensor)  // TypeProto.tensor_type
    var info = ProtobufMessage()
    info.string(1, port.name)
    info.message(2, type)
    return info
  }
}
