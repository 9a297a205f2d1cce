import Datasets
import Foundation
import TestSupport
import Testing
import ZMQ

/// A fresh folder per test, removed afterwards.

/// Bad input ends with one clear line on stderr and a non-zero exit, never a stack trace.
func expectOneLineError(_ result: ChildProcess.Result, mentioning text: String, sourceLocation: SourceLocation = #_sourceLocation) {
  #expect(!result.timedOut, sourceLocation: sourceLocation)
  #expect(result.status != 0, sourceLocation: sourceLocation)
  let lines = result.stderr.split(separator: "\n", omittingEmptySubsequences: true)
  #expect(lines.count == 1, "stderr: \(result.stderr)", sourceLocation: sourceLocation)
  #expect(result.stderr.contains(text), "stderr: \(result.stderr)", sourceLocation: sourceLocation)
}

@Suite("The stagewise command", .serialized)
struct CLITests {
  @Test func missingDataSetNamesTheFolderAndTheFix() throws {
    let dir = try temporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    try "data: {path: \(dir)/nowhere}\n".write(toFile: "\(dir)/c.yaml", atomically: true, encoding: .utf8)
    let result = try ChildProcess.stagewise(["train", "--config", "\(dir)/c.yaml", "--out", "\(dir)/run"])
    expectOneLineError(result, mentioning: "Fashion-MNIST not found")
  }

  @Test func corruptIDXFileIsNamed() throws {
    let dir = try temporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    var images = IDXFile(dimensions: [4, 28, 28], bytes: [UInt8](repeating: 9, count: 4 * 784)).encoded
    images[3] = 7  // wrong rank in the magic number
    try Gzip.write(images, to: "\(dir)/train-images-idx3-ubyte.gz")
    try Gzip.write(IDXFile(dimensions: [4], bytes: [0, 1, 2, 3]).encoded, to: "\(dir)/train-labels-idx1-ubyte.gz")
    try "data: {path: \(dir)}\n".write(toFile: "\(dir)/c.yaml", atomically: true, encoding: .utf8)
    let result = try ChildProcess.stagewise(["train", "--config", "\(dir)/c.yaml", "--out", "\(dir)/run"])
    expectOneLineError(result, mentioning: "IDX rank 7")
  }

  @Test(arguments: [
    ("training: {epochz: 2}\n", "training.epochz: unknown key"),
    ("training: {epochs: [1]}\n", "training.epochs: expected a single value"),
    ("training: {epochs: many}\n", "training.epochs: expected an integer"),
    ("stages:\n  - layers: [{type: linear, out: 8}]\n  - layers: [{type: linear, in: 16, out: 4}]\n",
     "stages[1].layers[0]: linear expects 16 inputs, the previous stage outputs 8"),
  ])
  func badConfigIsOneLineWithItsKeyPath(yaml: String, expected: String) throws {
    let dir = try temporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    try yaml.write(toFile: "\(dir)/c.yaml", atomically: true, encoding: .utf8)
    let result = try ChildProcess.stagewise(["train", "--config", "\(dir)/c.yaml", "--out", "\(dir)/run"])
    expectOneLineError(result, mentioning: expected)
    #expect(!FileManager.default.fileExists(atPath: "\(dir)/run"), "nothing is written for a bad config")
  }

  @Test func missingConfigFileIsNamed() throws {
    let result = try ChildProcess.stagewise(["train", "--config", "/no/such/config.yaml"])
    expectOneLineError(result, mentioning: "/no/such/config.yaml")
  }

  /// A Z85 key may begin with '-' (one key in 85): `--scheduler-key` takes it as its value,
  /// not as an unknown option (a CI run's CURVE test once failed so, with exit status 64).
  @Test func aKeyThatBeginsWithADashIsAValue() throws {
    var pair = try CurveKeyPair.generate()
    for _ in 0..<5000 where !pair.publicKey.hasPrefix("-") { pair = try CurveKeyPair.generate() }
    try #require(pair.publicKey.hasPrefix("-"))
    let result = try ChildProcess.stagewise(
      ["worker", "--scheduler", "tcp://127.0.0.1:\(try freePort())", "--wait-seconds", "1",
       "--scheduler-key", pair.publicKey, "--key", pair.secretKey],
      timeout: .seconds(30))
    #expect(result.status != 64 && !result.stderr.contains("Missing value"), "\(result.stderr)")
    #expect(result.stderr.contains("no answer from"), "\(result.stderr)")
  }

  @Test func smokeRunWritesTheRunDirectory() throws {
    let dir = try temporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let config = """
      name: smoke
      data: {source: synthetic, syntheticTrain: 600, syntheticTest: 200}
      training: {epochs: 3, batchSize: 32}
      stages:
        - layers: [{type: linear, out: 32}, {type: relu}]
        - layers: [{type: linear, out: 32}, {type: relu}]
      """
    try config.write(toFile: "\(dir)/c.yaml", atomically: true, encoding: .utf8)
    let result = try ChildProcess.stagewise(["train", "--config", "\(dir)/c.yaml", "--out", "\(dir)/run"])
    #expect(result.status == 0, "\(result.stderr)")
    #expect(result.stdout.contains("final test accuracy"))
    let files = Set(try FileManager.default.contentsOfDirectory(atPath: "\(dir)/run"))
    #expect(files == ["config.yaml", "metrics.jsonl", "stage-0.safetensors", "stage-1.safetensors"])
    let lines = try String(contentsOfFile: "\(dir)/run/metrics.jsonl", encoding: .utf8).split(separator: "\n")
    #expect(lines.count == 3)
    let last = try JSONSerialization.jsonObject(with: Data(lines[2].utf8)) as? [String: Any]
    let test = last?["test"] as? [String: Any]
    #expect((test?["stageAccuracy"] as? [Double])?.count == 2)
    #expect(((test?["accuracy"] as? Double) ?? 0) > 0.5)
  }

  /// The update-locking benchmark at a tiny size: every mode runs and every artifact is
  /// written and well formed (no speed is asserted).
  @Test func pipelineBenchmarkWritesEveryArtifact() throws {
    let dir = try temporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let result = try ChildProcess.stagewise(
      ["bench", "pipeline", "--synthetic", "--batches", "8", "--batch-size", "16", "--width", "16", "--straggler", "2",
       "--target-accuracy", "0.3", "--max-epochs", "2", "--no-pytorch", "--out", dir], timeout: .seconds(300))
    #expect(result.status == 0, "\(result.stderr)")
    let rows = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(dir)/rows.json"))) as? [[String: Any]]
    let modes = ["one-process-e2e", "one-process-greedy", "e2e-distributed", "gpipe", "lockstep", "pipelined", "replay", "pipelined-curve", "dfa", "dni", "sid"]
    #expect(rows?.compactMap { $0["mode"] as? String } == modes + modes.dropFirst(2))  // then stage 0 slowed × 2
    #expect(rows?.last?["slowdown"] as? Double == 2)
    #expect((rows?.last { $0["mode"] as? String == "replay" }?["replay"] as? [String: Any])?["draws"] != nil)
    let race = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(dir)/time-to-accuracy.json"))) as? [[String: Any]]
    #expect(race?.compactMap { $0["mode"] as? String } == ["one-process-e2e", "pipelined"])
    for plot in ["throughput.svg", "accuracy-over-time.svg"] {
      #expect(try String(contentsOfFile: "\(dir)/\(plot)", encoding: .utf8).contains("polyline"), "\(plot)")
    }
    let gpipe = rows?.first { $0["mode"] as? String == "gpipe" }
    #expect(gpipe?["theoreticalBubble"] as? Double == 1.0 / 5.0)
    #expect((gpipe?["busy"] as? [Double])?.count == 2)
    // Bubble is 1 − mean busy, imbalance 1 − max busy: never more than the bubble.
    for row in rows ?? [] where (row["busy"] as? [Double])?.isEmpty == false {
      let busy = row["busy"] as! [Double]
      let bubble = try #require(row["bubble"] as? Double), imbalance = try #require(row["imbalance"] as? Double)
      #expect(abs(bubble - (1 - busy.reduce(0, +) / Double(busy.count))) < 1e-9)
      #expect(abs(imbalance - (1 - busy.max()!)) < 1e-9 && imbalance <= bubble + 1e-9)
    }
    // Bytes each way: gradients, errors and synthesiser targets go upstream, nothing under greedy;
    // feedback staleness for the methods that have feedback.
    func row(_ mode: String) -> [String: Any]? { rows?.first { $0["mode"] as? String == mode } }
    for (mode, upstream) in [("e2e-distributed", true), ("dfa", true), ("dni", true), ("pipelined", false)] {
      let up = try #require(row(mode)?["bytesPerSampleUp"] as? [Double]), down = try #require(row(mode)?["bytesPerSampleDown"] as? [Double])
      #expect(down[0] > 0 && (up.reduce(0, +) > 0) == upstream, "\(mode): down \(down), up \(up)")
    }
    #expect((row("dfa")?["meanStaleness"] as? [Double])?.count == 1 && row("pipelined")?["meanStaleness"] == nil)
    // Injected straggler time is counted apart from fresh compute, on the slowed stage only.
    let slowed = try #require(rows?.last { $0["mode"] as? String == "pipelined" && $0["slowdown"] as? Double == 2 })
    let straggle = try #require(slowed["straggleFraction"] as? [Double])
    #expect(straggle[0] > 0 && straggle[1] == 0)
    // The one-process baselines run with the cores the daemon's two workers use.
    let oneProcess = rows?.first { $0["mode"] as? String == "one-process-greedy" }
    #expect(oneProcess?["threads"] as? Int == min(2, ProcessInfo.processInfo.activeProcessorCount))
    #expect(try String(contentsOfFile: "\(dir)/report.md", encoding: .utf8).contains("PyTorch column skipped"))
    let report = try String(contentsOfFile: "\(dir)/report.md", encoding: .utf8)
    #expect(report.contains("| 2 | pipelined |") && report.contains("pipelined / gpipe (M = 4)"))
    #expect(report.contains("CURVE's cost: pipelined-curve / pipelined = "))
    #expect(try String(contentsOfFile: "\(dir)/rows.csv", encoding: .utf8).split(separator: "\n").count == 2 * modes.count - 1)
    for mode in modes.dropFirst(2) {
      let svg = try String(contentsOfFile: "\(dir)/timeline-\(mode)-k2.svg", encoding: .utf8)
      #expect(svg.hasPrefix("<svg") && svg.contains("stage 1") && svg.hasSuffix("</svg>\n"))
      let trace = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(dir)/\(mode)-k2/trace.json"))) as? [String: Any]
      #expect((trace?["traceEvents"] as? [Any])?.isEmpty == false)
    }
  }

  /// `--replicas 2 --slow-stage 1`: a pipelined-replicas row (stage 1 on two workers) beside
  /// pipelined, calm and with stage 1 slowed, busy per replica and the ratio line.
  @Test func pipelineBenchmarkRunsAReplicatedRowBesidePipelined() throws {
    let dir = try temporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let result = try ChildProcess.stagewise(
      ["bench", "pipeline", "--synthetic", "--batches", "8", "--batch-size", "16", "--width", "16", "--modes", "pipelined",
       "--straggler", "2", "--slow-stage", "1", "--replicas", "2", "--no-pytorch", "--out", dir], timeout: .seconds(300))
    #expect(result.status == 0, "\(result.stderr)")
    let rows = try #require(
      try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(dir)/rows.json"))) as? [[String: Any]])
    #expect(rows.compactMap { $0["mode"] as? String } == ["pipelined", "pipelined-replicas", "pipelined", "pipelined-replicas"])
    for row in rows where row["mode"] as? String == "pipelined-replicas" {
      #expect(row["replicas"] as? [Int] == [1, 2])
      #expect((row["replicaBusy"] as? [[Double]])?.map(\.count) == [1, 2])
    }
    let slowed = try #require(rows.last)
    #expect(slowed["slowStage"] as? Int == 1 && (slowed["straggleFraction"] as? [Double])?[1] ?? 0 > 0)
    let report = try String(contentsOfFile: "\(dir)/report.md", encoding: .utf8)
    #expect(report.contains("| 2 | pipelined-replicas (1+2) | 2 (1) | 1 × 2.0 |"), "\(report)")
    #expect(report.contains("K = 2, stage 1 × 2.0: pipelined-replicas / pipelined = "))
    // One cell per column: a row has as many | as the header.
    let lines = report.split(separator: "\n").filter { $0.hasPrefix("| ") }
    #expect(Set(lines.map { $0.filter { $0 == "|" }.count }).count == 1, "\(lines)")
  }

  /// Every cell (K, method, seed) is a run; the table gives mean ± sd over seeds; a rerun
  /// with more seeds runs only the cells not in accuracy.json yet.
  @Test func accuracyBenchmarkWritesTableJSONAndPlotAndResumesCellByCell() throws {
    let dir = try temporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    func bench(_ methods: String, stages: String, seeds: String, epochs: Int = 1) throws -> ChildProcess.Result {
      let result = try ChildProcess.stagewise(
        ["bench", "accuracy", "--synthetic", "--methods", methods, "--stages", stages, "--seeds", seeds,
         "--epochs", "\(epochs)", "--width", "16", "--out", dir], timeout: .seconds(300))
      #expect(result.status == 0, "\(result.stderr)")
      return result
    }
    func rows() throws -> [[String: Any]] {
      try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(dir)/accuracy.json"))) as? [[String: Any]] ?? []
    }
    _ = try bench("e2e,greedy,sid@adam,contsup-R1E,kernel-sequential", stages: "2,4", seeds: "1,2")
    #expect(try rows().count == 20)
    let sid = try rows().first { $0["method"] as? String == "sid (adam 0.001)" && $0["stages"] as? Int == 4 }
    #expect((sid?["byDepth"] as? [Double])?.count == 4)
    let table = try String(contentsOfFile: "\(dir)/accuracy.md", encoding: .utf8)
    #expect(table.contains("| 4 | contsup-R1E |") && table.contains(" ± ") && table.contains("| 1, 2 |"), "\(table)")
    let svg = try String(contentsOfFile: "\(dir)/accuracy-by-depth.svg", encoding: .utf8)
    #expect(svg.contains("K = 2") && svg.contains("K = 4") && svg.contains("polyline"))
    #expect(try String(contentsOfFile: "\(dir)/accuracy-by-k.svg", encoding: .utf8).contains("polyline"))
    let again = try bench("greedy", stages: "2", seeds: "1,2,3")
    #expect(again.stdout.contains("2 cells were in accuracy.json already") || again.stderr.contains("2 cells were in accuracy.json already"), "\(again.stdout)")
    let greedy = try rows().filter { $0["method"] as? String == "greedy" && $0["stages"] as? Int == 2 }
    let count = try rows().count
    #expect(greedy.compactMap { $0["seed"] as? Int }.sorted() == [1, 2, 3] && count == 21)
    #expect(try String(contentsOfFile: "\(dir)/accuracy.md", encoding: .utf8).contains("| 1, 2, 3 |"))
    // Another setup (2 epochs) is a cell of its own, never averaged with the 1-epoch runs.
    _ = try bench("greedy", stages: "2", seeds: "1", epochs: 2)
    let mixed = try String(contentsOfFile: "\(dir)/accuracy.md", encoding: .utf8)
    #expect(mixed.contains("| model A (width 16), 2 epochs, synthetic | 2 | greedy |") && mixed.contains("| model A (width 16), 1 epochs, synthetic | 2 | greedy |"), "\(mixed)")
    #expect(mixed.contains("| 1, 2, 3 |"))
    // cDNI with the auxiliary loss: its hidden stage trains a head too, so it is scored by depth.
    _ = try bench("cdni,cdni+aux", stages: "2", seeds: "1")
    let depths = try Dictionary(uniqueKeysWithValues: rows().compactMap { row in
      (row["method"] as? String).flatMap { $0.hasPrefix("cdni") ? ($0, (row["byDepth"] as? [Double])?.count ?? 0) : nil }
    })
    #expect(depths == ["cdni": 1, "cdni+aux": 2], "\(depths)")
  }

  /// Model C from its shipped files: cut as config/resnet-c-kK.yaml says, scored by depth; a K
  /// it does not ship is refused with what to do.
  @Test func accuracyBenchmarkRunsModelCFromItsFiles() throws {
    let dir = try temporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let arguments = ["bench", "accuracy", "--synthetic", "--model", "c", "--configs", packageRoot + "/config", "--methods", "greedy",
                     "--epochs", "1", "--train-limit", "64", "--out", dir]
    let result = try ChildProcess.stagewise(arguments + ["--stages", "2"], timeout: .seconds(300))
    #expect(result.status == 0, "\(result.stderr)")
    let rows = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(dir)/accuracy.json"))) as? [[String: Any]]
    #expect(rows?.count == 1 && rows?.first?["model"] as? String == "c" && (rows?.first?["byDepth"] as? [Double])?.count == 2)
    let refused = try ChildProcess.stagewise(arguments + ["--stages", "3"], timeout: .seconds(60))
    #expect(refused.status != 0 && refused.stderr.contains("model C at K = 3:") && refused.stderr.contains("model C ships for K = 2, 4, 8, 16"), "\(refused.stderr)")
  }

  @Test func evalReproducesARunAndInspectReadsIt() throws {
    let dir = try temporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let config = "data: {source: synthetic, syntheticTrain: 600, syntheticTest: 200}\ntraining: {epochs: 2, batchSize: 32}\nstages:\n  - layers: [{type: linear, out: 32}, {type: relu}]\n  - layers: [{type: linear, out: 32}, {type: relu}]\n"
    try config.write(toFile: "\(dir)/c.yaml", atomically: true, encoding: .utf8)
    let trained = try ChildProcess.stagewise(["train", "--config", "\(dir)/c.yaml", "--out", "\(dir)/run"])
    #expect(trained.status == 0, "\(trained.stderr)")
    let final = trained.stdout.split(separator: "\n").last { $0.hasPrefix("final test accuracy") }!
    let accuracy = final.split(separator: " ")[3].dropLast()  // "NN.NN%;"
    let evaluated = try ChildProcess.stagewise(["eval", "\(dir)/run"])
    #expect(evaluated.status == 0, "\(evaluated.stderr)")
    #expect(evaluated.stdout.contains("test accuracy \(accuracy.dropLast()) %"), "\(evaluated.stdout) vs \(final)")
    let inspected = try ChildProcess.stagewise(["inspect", "\(dir)/run/stage-0.safetensors"])
    #expect(inspected.status == 0 && inspected.stdout.contains("body.0.weight") && inspected.stdout.contains("optimizer.momentum"))
    let checkpoint = try Data(contentsOf: URL(fileURLWithPath: "\(dir)/run/stage-1.safetensors"))
    try checkpoint.prefix(checkpoint.count / 2).write(to: URL(fileURLWithPath: "\(dir)/run/stage-1.safetensors"))
    expectOneLineError(try ChildProcess.stagewise(["eval", "\(dir)/run"]), mentioning: "stage-1.safetensors")
  }

  @Test func renderK8sRefusesABadConfigLikeLaunch() throws {
    let dir = try temporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    try "stages:\n  - layers: [{type: linear, out: 8}]\n  - layers: [{type: linear, in: 16, out: 4}]\n".write(toFile: "\(dir)/c.yaml", atomically: true, encoding: .utf8)
    expectOneLineError(
      try ChildProcess.stagewise(["render", "k8s", "--config", "\(dir)/c.yaml", "--out", "\(dir)/k8s.yaml"]),
      mentioning: "stages[1].layers[0]: linear expects 16 inputs, the previous stage outputs 8")
    #expect(!FileManager.default.fileExists(atPath: "\(dir)/k8s.yaml"))
    let good = try ChildProcess.stagewise(["render", "k8s", "--out", "\(dir)/k8s.yaml"])
    #expect(good.status == 0, "\(good.stderr)")
    let rendered = try String(contentsOfFile: "\(dir)/k8s.yaml", encoding: .utf8)
    #expect(rendered.contains("completionMode: Indexed"))
  }

  @Test func kernelBenchmarkRunsAtATinySize() throws {
    let dir = try temporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let result = try ChildProcess.stagewise(
      ["bench", "kernels", "--rounds", "1", "--steps", "1", "--no-pytorch", "--json", "\(dir)/k.json"], timeout: .seconds(300))
    #expect(result.status == 0, "\(result.stderr)")
    #expect(result.stdout.contains("OpenBLAS 0.") && result.stdout.contains(" core "))
    let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(dir)/k.json"))) as? [String: Any]
    let peak = try #require(json?["fmaPeakGFLOPS"] as? [String: Double])
    #expect(!peak.isEmpty && peak.values.allSatisfy { $0 > 1 })
    #expect((json?["rawGemmGFLOPS"] as? [String: Double])?.values.allSatisfy { $0 > 0 } == true)
    let models = try #require(json?["models"] as? [[String: Any]])
    #expect(models.compactMap { $0["model"] as? String } == ["A", "B"])
    for model in models {
      let rates = try #require(model["samplesPerSecond"] as? [String: Double])
      #expect(rates.count == peak.count && rates.values.allSatisfy { $0 > 0 })
    }
    #expect((json?["pytorchSkipped"] as? String)?.contains("--no-pytorch") == true)
  }
}
