import Foundation
import Learning
import Runtime
import TestSupport
import Testing
import Wire
import ZMQ

/// Keys for a scheduler and `workers` workers (`DIR/scheduler.key`, `DIR/worker-K.key`), and
/// `config` with CURVE on and those workers allowed, written to `DIR/job.yaml`.
func writeCurveJob(_ config: RunConfig, workers: Int, in dir: String) throws -> (configPath: String, scheduler: CurveKeyPair) {
  let schedulerKey = try KeyFile.generate(base: "\(dir)/scheduler")
  var config = config
  config.security.curve = true
  config.security.schedulerKey = "\(dir)/scheduler.key"
  config.security.allowedWorkerKeys = try (0..<workers).map { try KeyFile.generate(base: "\(dir)/worker-\($0)").publicKey }
  let path = "\(dir)/job.yaml"
  try config.yaml().write(toFile: path, atomically: true, encoding: .utf8)
  return (path, schedulerKey)
}

/// CURVE end to end, on loopback: only workers whose keys are on the allow-list join; a
/// stranger's key is refused and logged, a plaintext peer cannot talk at all, and the job runs
/// to the end regardless. Binding beyond loopback without CURVE needs --insecure.
@Suite("Security: CURVE and the allow-list", .serialized)
struct SecurityTests {
  @Test func onlyAllowedKeysJoinAndTheJobIsUnaffected() throws {
    let dir = try temporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let stranger = try KeyFile.generate(base: "\(dir)/stranger")
    var config = daemonConfig(epochs: 3)
    config.daemon.controlPort = try freePort()
    let (path, schedulerKey) = try writeCurveJob(config, workers: 3, in: dir)
    let endpoint = "tcp://127.0.0.1:\(config.daemon.controlPort)"

    let scheduler = try ChildProcess(stagewise: ["scheduler", "--config", path, "--out", "\(dir)/run", "--wait-seconds", "60"])
    // Two intruders come first: a key nobody allowed, and no key at all.
    let intruder = try ChildProcess(stagewise: [
      "worker", "--scheduler", endpoint, "--wait-seconds", "3", "--key", "\(dir)/stranger.key", "--scheduler-key", "\(dir)/scheduler.pub",
    ])
    let plaintext = try ChildProcess(stagewise: ["worker", "--scheduler", endpoint, "--wait-seconds", "3"])
    let refusedIntruder = intruder.wait(timeout: .seconds(30)), refusedPlaintext = plaintext.wait(timeout: .seconds(30))
    for refused in [refusedIntruder, refusedPlaintext] {
      #expect(refused.status != 0 && !refused.timedOut)
      #expect(refused.stderr.contains("no answer from \(endpoint)") && refused.stderr.contains("CURVE"), "\(refused.stderr)")
    }
    // A raw plaintext socket gets no word out of the scheduler either.
    let context = try Context()
    let raw = try Socket(context, .dealer)
    try raw.connect(endpoint)
    try raw.send(Message(kind: .hello, body: ["host": "plaintext"]).encode())
    #expect(try Socket.pollReadable([raw], timeoutMilliseconds: 500).isEmpty)

    let workers = try (0..<3).map { stage in
      try ChildProcess(stagewise: [
        "worker", "--scheduler", endpoint, "--stage", "\(stage)", "--key", "\(dir)/worker-\(stage).key",
        "--scheduler-key", schedulerKey.publicKey,
      ])
    }
    let result = scheduler.wait(timeout: .seconds(120))
    #expect(result.status == 0, "\(result.stderr)")
    #expect(result.stderr.contains("key \(stranger.publicKey) is not on security.allowedWorkerKeys"), "\(result.stderr)")
    for worker in workers { #expect(worker.wait(timeout: .seconds(60)).status == 0) }
    #expect(metricsLines("\(dir)/run").count == 3)
    let manifest = try #require(readManifest("\(dir)/run"))
    #expect(manifest.state == "finished" && (manifest.rejected["refused-key"] ?? 0) >= 1)
    #expect(manifest.stages.count == 3)
  }

  @Test func bindingBeyondLoopbackWithoutCurveNeedsInsecure() throws {
    var config = daemonConfig(epochs: 1)
    config.daemon.bind = "0.0.0.0"
    let (dir, path) = try prepare(config)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    expectOneLineError(
      try ChildProcess.stagewise(["scheduler", "--config", path, "--out", "\(dir)/run"]),
      mentioning: "binding 0.0.0.0 without CURVE lets anyone who can reach it join the job")
    expectOneLineError(
      try ChildProcess.stagewise(["worker", "--scheduler", "tcp://127.0.0.1:1", "--bind", "0.0.0.0"]),
      mentioning: "or pass --insecure")
    expectOneLineError(
      try ChildProcess.stagewise(["worker", "--scheduler", "tcp://127.0.0.1:1", "--key", "\(dir)/missing.key"]),
      mentioning: "is neither a key file nor a readable file")
    config.security.curve = true
    config.security.schedulerKey = "\(dir)/missing.key"
    try config.yaml().write(toFile: path, atomically: true, encoding: .utf8)
    expectOneLineError(try ChildProcess.stagewise(["launch", "--config", path]), mentioning: "security.schedulerKey")
    config.security.allowedWorkerKeys = ["short"]
    try config.yaml().write(toFile: path, atomically: true, encoding: .utf8)
    expectOneLineError(try ChildProcess.stagewise(["launch", "--config", path]), mentioning: "security.allowedWorkerKeys[0]")
  }
}
