import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// A link between hosts: a rate (nil: not shaped) and a one-way delay; `loopback` puts every
/// process on one host's loopback instead.
public struct LinkProfile: Codable, Sendable, Equatable {
  public var name: String
  public var megabitsPerSecond: Double?
  public var delayMilliseconds: Double

  public static let defaults = [
    "loopback", "10gbit+0.1ms", "1gbit+1ms", "100mbit+5ms", "100mbit+20ms",
  ]

  public var isLoopback: Bool { name == "loopback" }

  /// `loopback`, or RATE+DELAY: RATE as `100mbit` or `1gbit` (or `unshaped`), DELAY as `5ms`.
  public init(parsing text: String) throws {
    name = text
    guard text != "loopback" else {
      (megabitsPerSecond, delayMilliseconds) = (nil, 0)
      return
    }
    let parts = text.lowercased().split(separator: "+").map(String.init)
    let rate: Double?? = parts.first.flatMap { r in
      r == "unshaped"
        ? .some(nil)
        : r.hasSuffix("gbit")
          ? Double(r.dropLast(4)).map { $0 * 1000 }
          : r.hasSuffix("mbit") ? Double(r.dropLast(4)) : nil
    }
    guard parts.count == 2, let rate, rate.map({ $0 > 0 }) ?? true, parts[1].hasSuffix("ms"),
      let delay = Double(parts[1].dropLast(2)), delay >= 0
    else {
      throw BenchmarkError(
        "link profile \(text): write loopback or RATE+DELAY, e.g. 100mbit+5ms, 1gbit+1ms, "
          + "unshaped+0ms"
      )
    }
    (megabitsPerSecond, delayMilliseconds) = (rate, delay)
  }

  /// What shapes this link, for the report.
  public var mechanism: String {
    if isLoopback { return "none: every process on one host's loopback" }
    let rate =
      megabitsPerSecond.map { "tbf at \(Self.rateText($0)) on each host's egress" }
      ?? "no rate limit"
    return
      "\(rate); delay \(delayMilliseconds) ms one way by a TUN relay (this kernel has no netem)"
  }

  static func rateText(_ megabits: Double) -> String {
    megabits >= 1000 ? "\(megabits / 1000) Gb/s" : "\(megabits) Mb/s"
  }
}

/// Hosts for one run: a network namespace per host, each with a TUN device whose other end a
/// `LinkRelay` holds (in a namespace of its own), its rate shaped by `tbf`; addresses from
/// TEST-NET-1 (192.0.2.0/24), reachable only inside. The root namespace's networking is never
/// touched. `tearDown` (also at deinit, and for leftovers of a killed run at the next start)
/// stops every process in the namespaces and deletes them.
public final class NetworkHosts {
  static let prefix = "swnet"
  static let ip = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip"].first {
    FileManager.default.isExecutableFile(atPath: $0)
  }
  static let tc = ["/usr/sbin/tc", "/sbin/tc", "/usr/bin/tc"].first {
    FileManager.default.isExecutableFile(atPath: $0)
  }

  let count: Int
  let profile: LinkProfile
  let tag: String
  var relay: Process?

  /// Why namespaces cannot be made here, or nil when they can.
  static let unavailable: String? = {
    guard ip != nil, tc != nil else { return "no `ip` or `tc` command (Debian package iproute2)" }
    let probe = "\(prefix)probe\(getpid())"
    let made = run(["netns", "add", probe])
    _ = run(["netns", "del", probe])
    guard made.status == 0 else {
      return "cannot create a network namespace: \(made.output) (needs root)"
    }
    return FileManager.default.fileExists(atPath: "/dev/net/tun") ? nil : "no /dev/net/tun"
  }()

  init(count: Int, profile: LinkProfile, executable: String) throws {
    (self.count, self.profile) = (count, profile)
    tag = "\(Self.prefix)\(String(UInt32.random(in: 0..<0xFFFF), radix: 16))"
    Self.removeLeftovers()
    do {
      for h in 0..<(profile.isLoopback ? 1 : count) {
        try Self.must(["netns", "add", namespace(h)])
        try Self.must(["-n", namespace(h), "link", "set", "lo", "up"])
      }
      guard !profile.isLoopback else { return }
      try Self.must(["netns", "add", "\(tag)-relay"])
      let relay = Process()
      relay.executableURL = URL(fileURLWithPath: Self.ip!)
      relay.arguments = [
        "netns", "exec", "\(tag)-relay", executable, "relay", "--hosts", "\(count)", "--delay-us",
        "\(profile.delayMilliseconds * 1000)",
      ]
      let ready = Pipe()
      relay.standardOutput = ready
      try relay.run()
      self.relay = relay
      // The relay prints one line when its devices exist.
      let line = try Self.readLine(ready.fileHandleForReading, timeout: 10)
      guard line.hasPrefix("relay ready") else {
        throw BenchmarkError("the link relay did not start: it said \(line)")
      }
      for h in 0..<count {
        let (device, ns) = ("tun\(h)", namespace(h))
        try Self.must(["-n", "\(tag)-relay", "link", "set", device, "netns", ns])
        try Self.must(["-n", ns, "addr", "add", "\(address(h))/24", "dev", device])
        try Self.must(["-n", ns, "link", "set", device, "up"])
        if let rate = profile.megabitsPerSecond {
          // A burst of 10 ms of traffic (at least 32 KiB): what the kernel's timer needs at this
          // rate.
          let burst = max(32_768, Int(rate * 1e6 / 8 / 100))
          let shaped = Self.run([
            "netns", "exec", ns, Self.tc!, "qdisc", "add", "dev", device, "root", "tbf", "rate",
            "\(Int(rate))mbit", "burst", "\(burst)", "latency", "200ms",
          ])
          guard shaped.status == 0 else {
            throw BenchmarkError("tc tbf on \(ns): \(shaped.output)")
          }
        }
      }
    } catch {
      tearDown()
      throw error
    }
  }

  deinit { tearDown() }

  func namespace(_ host: Int) -> String { "\(tag)-h\(profile.isLoopback ? 0 : host)" }
  func address(_ host: Int) -> String { profile.isLoopback ? "127.0.0.1" : "192.0.2.\(host + 1)" }

  /// `executable ARGUMENTS` on host `host`, its output into `log`.
  func start(on host: Int, _ executable: String, _ arguments: [String], log: String) throws
    -> Process
  {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: Self.ip!)
    process.arguments = ["netns", "exec", namespace(host), executable] + arguments
    _ = FileManager.default.createFile(atPath: log, contents: nil)
    let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
    (process.standardOutput, process.standardError) = (handle, handle)
    try process.run()
    return process
  }

  func tearDown() {
    if let relay { Self.kill(relay) }
    relay = nil
    Self.removeLeftovers(tag: tag)
  }

  /// SIGKILL and reap, waiting at most 5 s (nothing here holds state worth a graceful stop).
  static func kill(_ process: Process) {
    guard process.isRunning else { return }
    Glibc.kill(process.processIdentifier, SIGKILL)
    let deadline = Date().addingTimeInterval(5)
    while process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.01) }
  }

  /// Unblocks every signal of this process: a parent (a test harness) may have blocked them,
  /// and children inherit the mask — a relay or worker that cannot be stopped outlives its run.
  public static func unblockSignals() {
    var none = sigset_t()
    sigemptyset(&none)
    sigprocmask(SIG_SETMASK, &none, nil)
  }

  /// Kills what runs in our namespaces (all of this benchmark's, or one run's) and deletes them.
  static func removeLeftovers(tag: String = prefix) {
    guard ip != nil else { return }
    let names = run(["netns", "list"]).output.split(separator: "\n").compactMap {
      $0.split(separator: " ").first.map(String.init)
    }
    for name in names where name.hasPrefix(tag) && !name.hasPrefix("\(prefix)probe") {
      for pid in run(["netns", "pids", name]).output.split(separator: "\n").compactMap({ Int32($0) }
      ) { Glibc.kill(pid, SIGKILL) }
      _ = run(["netns", "del", name])
    }
  }

  static func must(_ arguments: [String]) throws {
    let result = run(arguments)
    guard result.status == 0 else {
      throw BenchmarkError("ip \(arguments.joined(separator: " ")): \(result.output)")
    }
  }

  static func run(_ arguments: [String]) -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: ip ?? "/usr/sbin/ip")
    process.arguments = arguments
    let pipe = Pipe()
    (process.standardOutput, process.standardError) = (pipe, pipe)
    do { try process.run() } catch { return (-1, "\(error)") }
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (
      process.terminationStatus,
      String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    )
  }

  /// One line from `handle`, waiting at most `timeout` seconds.
  static func readLine(_ handle: FileHandle, timeout: Double) throws -> String {
    var polled = pollfd(fd: handle.fileDescriptor, events: Int16(POLLIN), revents: 0)
    var text = ""
    let deadline = Date().addingTimeInterval(timeout)
    while !text.contains("\n") {
      guard Date() < deadline, poll(&polled, 1, 100) >= 0 else {
        throw BenchmarkError("no answer within \(timeout) s")
      }
      guard polled.revents != 0 else { continue }
      let data = handle.availableData
      guard !data.isEmpty else { throw BenchmarkError("it exited: \(text)") }
      text += String(decoding: data, as: UTF8.self)
    }
    return String(text.prefix { $0 != "\n" })
  }
}
