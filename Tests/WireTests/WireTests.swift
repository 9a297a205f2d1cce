import Foundation
import Testing

@testable import Wire

func sampleMessage() -> Message {
  var message = Message(kind: .train, tensors: [
    WireTensor(role: .activations, shape: [2, 3], floats: [1, 2, 3, 4, 5, 6]),
    WireTensor(role: .labels, labels: [7, 9]),
  ])
  message.job = 11
  message.stage = 2
  message.epoch = 3
  message.step = 1234
  message.sequence = 99
  message.flags = 1
  message.microIndex = 2
  message.microCount = 4
  return message
}

func rejection(_ frames: [[UInt8]]) -> WireError? {
  do {
    _ = try Message(frames: frames)
    return nil
  } catch {
    return error
  }
}

@Suite("Wire format")
struct WireTests {
  @Test func roundTrip() throws {
    let message = sampleMessage()
    let frames = message.encode()
    #expect(frames.count == 3)
    #expect(frames[0].count == Protocol.headerSize + 2 * Protocol.descriptorSize)
    let decoded = try Message(frames: frames)
    #expect(decoded == message)
    #expect(decoded.tensor(.activations)?.floats == [1, 2, 3, 4, 5, 6])
    #expect(decoded.tensor(.labels)?.int32s == [7, 9])
  }

  /// Reduced formats travel at their own sizes: 2 bytes a value for f16 and bf16, and for i8
  /// one byte a value plus a 4-byte scale per row; a frame of another size is refused.
  @Test(arguments: [(DType.f16, 24), (.bf16, 24), (.i8, 12 + 4 * 3)])
  func reducedFormatsHaveTheirSizes(dtype: DType, bytes: Int) throws {
    let message = Message(kind: .train, tensors: [WireTensor(role: .activations, dtype: dtype, shape: [3, 4], bytes: [UInt8](repeating: 1, count: bytes))])
    #expect(try Message(frames: message.encode()) == message)
    var frames = message.encode()
    frames[1].removeLast()
    #expect(rejection(frames) == .sizeMismatch(tensor: 0, expectedBytes: bytes, gotBytes: bytes - 1))
  }

  @Test func headerIsLittleEndianWithMagicFirst() {
    let header = sampleMessage().encode()[0]
    #expect(Array(header[0..<4]) == Array("SWG1".utf8))
    #expect(header[4] == UInt8(Protocol.version) && header[5] == 0)
    #expect(header[6] == Kind.train.rawValue)
  }

  @Test func controlBodyRoundTrips() throws {
    struct Hello: Codable, Equatable { var host: String; var pid: Int }
    let message = Message(kind: .hello, body: Hello(host: "h", pid: 42))
    let decoded = try Message(frames: message.encode())
    #expect(try decoded.body(Hello.self) == Hello(host: "h", pid: 42))
    #expect(throws: WireError.self) { try decoded.body([Int].self) }
  }

  /// A stage with no loss of its own (e2e before the last) reports a NaN loss; its live report
  /// once arrived as "{}" and was dropped, rejection counts and all.
  @Test func nonFiniteNumbersSurviveTheBody() throws {
    struct Report: Codable { var loss: Double; var peak: Float; var floor: Double; var rejected: [String: Int] }
    let message = Message(kind: .stats, body: Report(loss: .nan, peak: .infinity, floor: -.infinity, rejected: ["bad-magic": 3]))
    let decoded = try Message(frames: message.encode()).body(Report.self)
    #expect(decoded.loss.isNaN && decoded.peak == .infinity && decoded.floor == -.infinity)
    #expect(decoded.rejected == ["bad-magic": 3])
  }

  @Test func eachMalformationHasItsReason() {
    var frames = sampleMessage().encode()
    #expect(rejection([]) == .noFrames)
    #expect(rejection([[1, 2, 3]]) == .headerTooShort(bytes: 3))

    var bad = frames
    bad[0][0] = 0x58
    #expect(rejection(bad)?.reason == "bad-magic")

    bad = frames
    bad[0][4] = 9  // any version but ours
    #expect(rejection(bad) == .versionMismatch(peer: 9))

    bad = frames
    bad[0][6] = 200
    #expect(rejection(bad) == .unknownKind(200))

    #expect(rejection(Array(frames.dropLast())) == .frameCountMismatch(declared: 2, frames: 1))

    bad = frames
    bad[1].removeLast()
    #expect(rejection(bad) == .sizeMismatch(tensor: 0, expectedBytes: 24, gotBytes: 23))

    bad = frames
    bad[0][Protocol.headerSize] = 99  // role of tensor 0
    #expect(rejection(bad) == .unknownRole(99))

    bad = frames
    bad[0][Protocol.headerSize + 1] = 77  // dtype of tensor 0
    #expect(rejection(bad) == .unknownDType(77))

    bad = frames
    bad[0][Protocol.headerSize + 2] = 9  // rank of tensor 0
    #expect(rejection(bad) == .badRank(9))

    // A forged shape that would overflow or exceed the element limit.
    bad = frames
    for i in 0..<8 { bad[0][Protocol.headerSize + 4 + i] = 0xFF }
    #expect(rejection(bad)?.reason == "too-large")

    frames[0][14] = 200  // tensor count
    #expect(rejection(frames) == .tooManyTensors(200))
  }

  @Test func expectChecksRoleDtypeAndShape() throws {
    let message = sampleMessage()
    #expect(try message.expect(.activations, .f32, sampleShape: [3]).shape == [2, 3])
    #expect(throws: WireError.self) { try message.expect(.activations, .f32, sampleShape: [4]) }
    #expect(throws: WireError.self) { try message.expect(.activations, .f32, sampleShape: [3], batch: 5) }
    #expect(throws: WireError.self) { try message.expect(.labels, .f32, sampleShape: []) }
    #expect(throws: WireError.self) { try message.expect(.belief, .f32, sampleShape: [10]) }
  }

  /// Seeded random mutations of valid frames: each either decodes or is rejected; nothing traps.
  @Test func randomMutationsNeverCrash() {
    var state: UInt64 = 0x1234_5678
    func next() -> Int {
      state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
      return Int(truncatingIfNeeded: state >> 33)
    }
    let valid = sampleMessage().encode()
    var rejected = 0
    for _ in 0..<5000 {
      var frames = valid
      for _ in 0..<(1 + next() % 4) {
        let f = next() % frames.count
        switch next() % 4 {
        case 0 where !frames[f].isEmpty: frames[f][next() % frames[f].count] = UInt8(truncatingIfNeeded: next())
        case 1 where !frames[f].isEmpty: frames[f].removeLast(1 + next() % frames[f].count)
        case 2: frames[f].append(contentsOf: [UInt8](repeating: UInt8(truncatingIfNeeded: next()), count: 1 + next() % 8))
        default: if frames.count > 1 && next() % 2 == 0 { frames.removeLast() } else { frames.append([1, 2]) }
        }
      }
      if rejection(frames) != nil { rejected += 1 }
    }
    #expect(rejected > 4000)
  }
}
