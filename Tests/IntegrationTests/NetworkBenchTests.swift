import Foundation
import TestSupport
import Testing

/// Namespaces and a TUN device: what `bench network` needs, and why not where it cannot run.
let networkBenchUnavailable: String? = TestHosts.availability.ok
  ? (FileManager.default.fileExists(atPath: "/dev/net/tun") ? nil : "no /dev/net/tun")
  : TestHosts.availability.reason

@Suite("bench network: hosts in namespaces, shaped links", .serialized, .enabled(if: networkBenchUnavailable == nil, "\(networkBenchUnavailable ?? "")"))
struct NetworkBenchTests {
  /// A tiny run on two profiles (loopback, and a link with 2 ms of delay by the relay and a
  /// rate by tbf): every artifact is there and says what it should, the shaped link is slower
  /// for e2e than for pipelined, and nothing is left behind.
  @Test func tinyRunOnTwoProfilesWritesEveryArtifact() throws {
    let dir = try temporaryDirectory("bench-network")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let result = try ChildProcess.stagewise([
      "bench", "network", "--synthetic", "--batches", "12", "--batch-size", "32", "--width", "64", "--stages", "2",
      "--profiles", "loopback,200mbit+2ms", "--modes", "pipelined,e2e-distributed,pipelined-replicas", "--wire-formats", "f32,bf16", "--out", dir,
    ], timeout: .seconds(300))
    #expect(result.status == 0, "\(result.stderr)")
    let rows = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(dir)/rows.json"))) as? [[String: Any]])
    #expect(rows.count == 8, "pipelined f32 and bf16, e2e, every stage on two hosts: on each profile")
    for row in rows {
      // Replicas split the 12 batches and first sum their changes at the epoch's end (no
      // periodic exchange within 16 steps): well above chance, not as far as one worker.
      let floor = row["mode"] as? String == "pipelined-replicas" ? 0.2 : 0.5
      #expect((row["samplesPerSecond"] as? Double ?? 0) > 0 && (row["testAccuracy"] as? Double ?? 0) > floor, "\(row)")
      #expect((row["busy"] as? [Double])?.count == 2 && (row["bytesPerSampleDown"] as? [Double])?.count == 2)
    }
    let bf16 = rows.first { $0["wireFormat"] as? String == "bf16" }
    let f32 = rows.first { $0["wireFormat"] as? String == "f32" && $0["mode"] as? String == "pipelined" }
    let halved = ((bf16?["bytesPerSampleDown"] as? [Double])?[0] ?? 0) / ((f32?["bytesPerSampleDown"] as? [Double])?[0] ?? 1)
    #expect(halved > 0.45 && halved < 0.55, "bf16 halves the bytes downstream: \(halved)")
    let report = try String(contentsOfFile: "\(dir)/report.md", encoding: .utf8)
    #expect(report.contains("### loopback") && report.contains("### 200mbit+2ms") && report.contains("delay 2.0 ms one way by a TUN relay"))
    #expect(report.contains("pipelined-replicas / pipelined = "))
    let replicated = try #require(rows.first { $0["mode"] as? String == "pipelined-replicas" })
    #expect(((replicated["bytesPerSampleUp"] as? [Double]) ?? []).allSatisfy { $0 > 0 }, "ACKs and STATE go up: \(replicated)")
    for plot in ["throughput-vs-delay.svg", "throughput-vs-bandwidth.svg"] {
      #expect(try String(contentsOfFile: "\(dir)/\(plot)", encoding: .utf8).contains("<svg"))
    }
    for run in ["loopback-pipelined-f32", "200mbit-2ms-e2e-distributed-f32", "200mbit-2ms-pipelined-bf16", "200mbit-2ms-pipelined-replicas-f32"] {
      #expect(FileManager.default.fileExists(atPath: "\(dir)/\(run)/run/trace.json"), "\(run)'s merged trace")
    }
    let left = try ChildProcess(executable: TestHosts.ip!, ["netns", "list"]).wait(timeout: .seconds(10))
    #expect(!left.stdout.contains("swnet"), "every namespace torn down: \(left.stdout)")
  }
}
