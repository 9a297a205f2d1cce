import Foundation

/// Control messages carry a small JSON body as one `body` tensor of bytes. Non-finite numbers
/// travel as "nan", "inf" and "-inf" (a diverged loss is news, not a reason to drop a report).
extension Message {
  public init<Body: Encodable>(kind: Kind, body: Body) {
    let encoder = JSONEncoder()
    encoder.outputFormatting = .sortedKeys
    encoder.nonConformingFloatEncodingStrategy = .convertToString(
      positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
    let bytes = (try? encoder.encode(body)).map { Array($0) } ?? Array("{}".utf8)
    self.init(
      kind: kind, tensors: [WireTensor(role: .body, dtype: .u8, shape: [bytes.count], bytes: bytes)]
    )
  }

  /// Decodes the JSON body as `Body`; a missing or malformed body is a `WireError`.
  public func body<Body: Decodable>(_ type: Body.Type) throws(WireError) -> Body {
    guard let tensor = tensor(.body), tensor.dtype == .u8 else {
      throw .unexpected("\(kind) without a body")
    }
    do {
      let decoder = JSONDecoder()
      decoder.nonConformingFloatDecodingStrategy = .convertFromString(
        positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
      return try decoder.decode(Body.self, from: Data(tensor.bytes))
    } catch {
      throw .unexpected("\(kind) body is not a valid \(Body.self): \(error)")
    }
  }
}
