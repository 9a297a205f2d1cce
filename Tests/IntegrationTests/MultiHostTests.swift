import Foundation
import Learning
import Runtime
import TestSupport
import Testing

/// Test hosts on this machine: one network namespace per host, each with a veth pair into a
/// "switch" namespace that bridges them (the root namespace's networking is never touched).
/// Addresses come from TEST-NET-1 (192.0.2.0/24), reachable only inside these namespaces.
final class TestHosts {
  let prefix: String
  let count: Int
  static let ip = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip"].first { FileManager.default.isExecutableFile(atPath: $0) }

  /// Whether namespaces can be made here, and why not when they cannot.
  static let availability: (ok: Bool, reason: String) = {
    guard ip != nil else { return (false, "no `ip` command (Debian package iproute2)") }
    let probe = "swprobe\(getpid())"
    let made = run(["netns", "add", probe])
    _ = run(["netns", "del", probe])
    return made.status == 0 ? (true, "") : (false, "cannot create a network namespace: \(made.stderr) (needs root)")
  }()

  init(count: Int) throws {
    prefix = "sw\(String(UInt32.random(in: 0..<0xFFFF), radix: 16))"
    self.count = count
    do {
      try Self.must(["netns", "add", "\(prefix)-sw"])
      try Self.must(["-n", "\(prefix)-sw", "link", "add", "br0", "type", "bridge"])
      try Self.must(["-n", "\(prefix)-sw", "link", "set", "br0", "up"])
      for h in 0..<count {
        let (host, inside, outside) = (name(h), "\(prefix)-v\(h)", "\(prefix)-p\(h)")
        try Self.must(["netns", "add", host])
        try Self.must(["link", "add", inside, "type", "veth", "peer", "name", outside])
        try Self.must(["link", "set", inside, "netns", host])
        try Self.must(["link", "set", outside, "netns", "\(prefix)-sw"])
        try Self.must(["-n", host, "addr", "add", "\(address(h))/24", "dev", inside])
        try Self.must(["-n", host, "link", "set", inside, "up"])
        try Self.must(["-n", host, "link", "set", "lo", "up"])
        try Self.must(["-n", "\(prefix)-sw", "link", "set", outside, "master", "br0"])
        try Self.must(["-n", "\(prefix)-sw", "link", "set", outside, "up"])
      }
    } catch {
      tearDown()
      throw error
    }
  }

  deinit { tearDown() }

  func name(_ host: Int) -> String { "\(prefix)-h\(host)" }
  func address(_ host: Int) -> String { "192.0.2.\(host + 1)" }

  /// `stagewise ARGUMENTS` on host `host`.
  func stagewise(on host: Int, _ arguments: [String]) throws -> ChildProcess {
    try ChildProcess(executable: Self.ip!, ["netns", "exec", name(host), ChildProcess.stagewisePath] + arguments)
  }

  /// Whether host `host` can open a TCP connection to `address:port` within `timeout`
  /// (tried every 200 ms, each try bounded by bash's `timeout 1`).
  func canConnect(from host: Int, to address: String, port: Int, within timeout: Duration) -> Bool {
    let deadline = ContinuousClock.now + timeout
    repeat {
      let probe = try? ChildProcess(
        executable: Self.ip!, ["netns", "exec", name(host), "timeout", "1", "bash", "-c", "exec 3<>/dev/tcp/\(address)/\(port)"])
      if probe?.wait(timeout: .seconds(5)).status == 0 { return true }
      usleep(200_000)
    } while ContinuousClock.now < deadline
    return false
  }

  /// Every host's links and addresses, for a failure message.
  func describe() -> String {
    (0..<count).map { h in
      let child = try? ChildProcess(executable: Self.ip!, ["-n", name(h), "-br", "addr"])
      return "[\(name(h))] " + (child?.wait(timeout: .seconds(5)).stdout ?? "?")
    }.joined()
  }

  /// Deleting a namespace deletes its end of every veth pair (and so the other end).
  func tearDown() {
    for h in 0..<count { _ = Self.run(["netns", "del", name(h)]) }
    _ = Self.run(["netns", "del", "\(prefix)-sw"])
  }

  struct CommandError: Error, CustomStringConvertible {
    var description: String
  }

  static func must(_ arguments: [String]) throws {
    let result = run(arguments)
    guard result.status == 0 else { throw CommandError(description: "ip \(arguments.joined(separator: " ")): \(result.stderr)") }
  }

  static func run(_ arguments: [String]) -> (status: Int32, stderr: String) {
    guard let ip, let child = try? ChildProcess(executable: ip, arguments) else { return (-1, "cannot run ip") }
    let result = child.wait(timeout: .seconds(20))
    return (result.status, result.stderr.trimmingCharacters(in: .whitespacesAndNewlines))
  }
}

@Suite("Across hosts: network namespaces on this machine", .serialized)
struct MultiHostTests {
  @Test(.enabled(if: TestHosts.availability.ok, "skipped: \(TestHosts.availability.reason)"))
  func threeHostsTrainOverTCPWithCURVE() throws {
    let hosts = try TestHosts(count: 3)
    var config = daemonConfig(epochs: 2)
    config.daemon.bind = hosts.address(0)
    config.daemon.controlPort = 5555  // each namespace has its own ports
    let dir = try temporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    // Beyond loopback every socket speaks CURVE: the scheduler's key, one per worker.
    let (path, schedulerKey) = try writeCurveJob(config, workers: 3, in: dir)
    let endpoint = "tcp://\(hosts.address(0)):5555"
    let scheduler = try hosts.stagewise(on: 0, ["scheduler", "--config", path, "--out", "\(dir)/run", "--wait-seconds", "120"])
    // The links are up before any worker starts: each worker host reaches the scheduler's port.
    for host in [1, 2] {
      try #require(
        hosts.canConnect(from: host, to: hosts.address(0), port: 5555, within: .seconds(30)),
        "host \(host) cannot reach \(endpoint) within 30 s\n\(hosts.describe())\n[scheduler]\n\(scheduler.stderr)")
    }
    let workers = try [(1, 0), (2, 1), (1, 2)].map { host, stage in
      try hosts.stagewise(on: host, [
        "worker", "--scheduler", endpoint, "--stage", "\(stage)", "--bind", hosts.address(host), "--wait-seconds", "60",
        "--key", "\(dir)/worker-\(stage).key", "--scheduler-key", schedulerKey.publicKey,
      ])
    }
    let result = scheduler.wait(timeout: .seconds(180))
    let workerResults = workers.map { $0.wait(timeout: .seconds(60)) }
    let workerLogs = workerResults.enumerated().map { "[worker \($0.offset), status \($0.element.status)]\n\($0.element.stderr)" }
    #expect(result.status == 0, "\(result.stderr)\n\(workerLogs.joined(separator: "\n"))\n\(hosts.describe())")
    let reports = metricsLines("\(dir)/run")
    #expect(reports.count == 2 && (reports.last?.test.accuracy ?? 0) > 0.5)
    let manifest = try #require(readManifest("\(dir)/run"))
    #expect(manifest.control == endpoint)
    #expect(manifest.stages.map { $0.dataEndpoint.contains(hosts.address($0.stage == 1 ? 2 : 1)) } == [true, true, true])
  }
}
