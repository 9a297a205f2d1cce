import Foundation
import Learning
import Runtime
import Telemetry

/// What a pipeline benchmark's traces say (busy, waiting, bubble, the steady-state window, a
/// timeline), and its report as Markdown, CSV and plots.
extension PipelineBenchmark {
  /// Wait and send-blocked fractions and wait percentiles per stage (see `Row`).
  public static func waitStatistics(_ trace: ChromeTrace, stages: Int)
    -> (wait: [Double], blocked: [Double], p50: [Double], p99: [Double])
  {
    guard let (from, to) = steadyWindow(trace, stages: stages) else { return ([], [], [], []) }
    func overlap(_ e: TraceEvent) -> Double {
      max(0, min(e.ts + (e.dur ?? 0), to) - max(e.ts, from))
    }
    var result: (wait: [Double], blocked: [Double], p50: [Double], p99: [Double]) = ([], [], [], [])
    for pid in 1...stages {
      let spans = trace.traceEvents.filter {
        $0.pid == pid && $0.ph == "X" && $0.ts + ($0.dur ?? 0) > from && $0.ts < to
      }
      let waits = spans.filter { $0.name == "receive-wait" || $0.name == "gradient-wait" }
      result.wait.append(waits.reduce(0) { $0 + overlap($1) } / (to - from))
      result.blocked.append(
        spans.filter { $0.name == "send-blocked" }.reduce(0) { $0 + overlap($1) } / (to - from))
      let sorted = waits.map { ($0.dur ?? 0) / 1000 }.sorted()
      func percentile(_ q: Double) -> Double {
        sorted.isEmpty ? 0 : sorted[min(sorted.count - 1, Int(q * Double(sorted.count)))]
      }
      result.p50.append(percentile(0.5))
      result.p99.append(percentile(0.99))
    }
    return result
  }

  /// The schedule's bubble: 1 − mean busy over the stages.
  public static func bubble(_ busy: [Double]) -> Double? {
    busy.isEmpty ? nil : 1 - busy.reduce(0, +) / Double(busy.count)
  }

  /// The bottleneck stage's idle fraction, 1 − max busy.
  public static func imbalance(_ busy: [Double]) -> Double? { busy.max().map { 1 - $0 } }

  /// Fresh compute (forward, backward, update) — or the named spans — over the steady-state
  /// window: from the last stage's first compute to the first stage's last, trimmed by 5 % at
  /// each end.
  public static func busyFractions(
    _ trace: ChromeTrace, stages: Int, spans names: Set<String> = freshCompute, pids: [Int]? = nil
  ) -> [Double] {
    guard let (from, to) = steadyWindow(trace, stages: stages) else { return [] }
    let spans = trace.traceEvents.filter { $0.ph == "X" && names.contains($0.name) }
    return (pids ?? Array(1...stages)).map { pid in
      spans.filter { $0.pid == pid }.reduce(0.0) { sum, e in
        sum + max(0, min(e.ts + (e.dur ?? 0), to) - max(e.ts, from))
      } / (to - from)
    }
  }

  /// Forward, backward, update — and DFA's update from an arrived error, DNI's synthesiser step.
  public static let freshCompute: Set<String> = [
    "forward", "backward", "update", "error-update", "synthesiser",
  ]

  /// Every span that occupies a stage's core: fresh compute, replay draws, injected straggle.
  static func computeSpans(_ trace: ChromeTrace) -> [TraceEvent] {
    let compute = freshCompute.union(["replay", "straggle"])
    return trace.traceEvents.filter { $0.ph == "X" && compute.contains($0.name) }
  }

  static func steadyWindow(_ trace: ChromeTrace, stages: Int) -> (Double, Double)? {
    let spans = computeSpans(trace)
    guard let lastStart = spans.filter({ $0.pid == stages }).map(\.ts).min(),
      let firstEnd = spans.filter({ $0.pid == 1 }).map({ $0.ts + ($0.dur ?? 0) }).max(),
      firstEnd > lastStart
    else { return nil }
    let margin = (firstEnd - lastStart) * 0.05
    return (lastStart + margin, firstEnd - margin)
  }

  /// A Gantt chart of ~40 ms… a few batches from the middle of the steady state.
  static func timeline(_ trace: ChromeTrace, stages: Int, title: String) -> String {
    let spans = trace.traceEvents.filter { $0.ph == "X" && $0.pid >= 1 }
    guard let (from, to) = steadyWindow(trace, stages: stages) else {
      return GanttChart.render([], rows: [], from: 0, to: 1, title: title)
    }
    let updates = spans.filter { $0.pid == 1 && $0.name == "update" }.map(\.ts).sorted()
    let perBatch =
      updates.count > 1
      ? (updates.last! - updates.first!) / Double(updates.count - 1) : (to - from) / 10
    let middle = (from + to) / 2
    let window = min(6 * perBatch, to - from)
    return GanttChart.render(
      spans.map { ($0.pid, $0.name, $0.ts, $0.dur ?? 0) },
      rows: (1...stages).map { ($0, "stage \($0 - 1)") },
      from: middle - window / 2, to: middle + window / 2, title: title)
  }

  /// The Markdown report of `rows`.
  public static func report(_ rows: [Row], microBatches: Int) -> String {
    var text =
      "| K | mode | cores (threads) | stage slowed | samples/s | PyTorch, same model and cores | "
      + "× one-process e2e | busy per stage | replay / straggle per stage | waiting for input | "
      + "send-blocked | wait p50 / p99 ms | bubble (GPipe theory) | imbalance | peak RSS MiB "
      + "per process | MB/s sent per stage | bytes/sample down ; up per stage | feedback "
      + "staleness mean (max) | test acc. | replay draws / stalls / mean age |\n"
    text += "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    func list(_ values: [Double], _ format: String, _ separator: String = " / ") -> String {
      guard !values.isEmpty else { return "–" }
      return values.map { String(format: format, $0) }.joined(separator: separator)
    }
    for row in rows {
      let bubble =
        row.bubble.map { b in
          String(format: "%.2f", b)
            + (row.theoreticalBubble.map { String(format: " (%.2f)", $0) } ?? "")
        } ?? "–"
      let replay =
        row.replay.map { String(format: "%d / %d / %.1f", $0.draws, $0.stalls, $0.meanAge) } ?? "–"
      let percentiles = zip(row.waitP50Milliseconds ?? [], row.waitP99Milliseconds ?? []).map {
        String(format: "%.1f / %.1f", $0, $1)
      }
      let torch =
        row.pytorchSamplesPerSecond.map {
          String(format: "%.0f (ours × %.2f)", $0, row.samplesPerSecond / $0)
        } ?? "–"
      let extra = zip(row.replayFraction ?? [], row.straggleFraction ?? []).map {
        String(format: "%.2f / %.2f", $0, $1)
      }
      let bytes = zip(row.bytesPerSampleDown ?? [], row.bytesPerSampleUp ?? []).map {
        String(format: "%.0f ; %.0f", $0, $1)
      }
      let staleness = zip(row.meanStaleness ?? [], row.maxStaleness ?? []).map {
        String(format: "%.1f (%d)", $0, $1)
      }
      text += String(
        format:
          "| %d | %@ | %d (%d) | %@ | %.0f | %@ | %.2f | %@ | %@ | %@ | %@ | %@ | %@ | %@ | %@ | "
          + "%@ | %@ | %@ | %.2f %% | %@ |\n",
        row.stages,
        label(row), row.cores, row.threads,
        row.slowdown > 1 ? String(format: "%d × %.1f", row.slowStage ?? 0, row.slowdown) : "–",
        row.samplesPerSecond, torch, row.speedupOverOneProcessE2E,
        row.replicaBusy.map { $0.map { list($0, "%.2f", "+") }.joined(separator: " / ") }
          ?? list(row.busy, "%.2f"),
        extra.isEmpty ? "–" : extra.joined(separator: ", "),
        list(row.waitFraction ?? [], "%.2f"),
        list(row.sendBlockedFraction ?? [], "%.2f"),
        percentiles.isEmpty ? "–" : percentiles.joined(separator: ", "),
        bubble, row.imbalance.map { String(format: "%.2f", $0) } ?? "–",
        list(row.peakResidentMiB, "%.0f"),
        list(row.megabytesPerSecond, "%.0f"), bytes.isEmpty ? "–" : bytes.joined(separator: " / "),
        staleness.isEmpty ? "–" : staleness.joined(separator: " / "), row.testAccuracy * 100, replay
      )
    }
    for k in Set(rows.map(\.stages)).sorted() {
      let of = { (mode: Mode) in
        rows.first { $0.stages == k && $0.mode == mode && $0.slowdown == 1 }?.samplesPerSecond
          ?? .nan
      }
      // Each ratio whose two modes were measured.
      let ratios = [
        ("pipelined / e2e-distributed", Mode.pipelined, Mode.e2e),
        ("pipelined / gpipe (M = \(microBatches))", .pipelined, .gpipe),
        ("pipelined / lockstep", .pipelined, .lockstep),
        ("pipelined / one-process greedy", .pipelined, .oneProcessGreedy),
        ("CURVE's cost: pipelined-curve / pipelined", .pipelinedCurve, .pipelined),
        ("dfa / e2e-distributed", .dfa, .e2e), ("dni / e2e-distributed", .dni, .e2e),
        ("dfa / pipelined", .dfa, .pipelined),
        ("dni / pipelined", .dni, .pipelined),
      ].filter { !of($0.1).isNaN && !of($0.2).isNaN }.map {
        String(format: "%@ = %.2f", $0.0, of($0.1) / of($0.2))
      }
      if !ratios.isEmpty { text += "\nK = \(k): " + ratios.joined(separator: ", ") + "\n" }
      for replicated in rows where replicated.stages == k && replicated.mode == .replicated {
        guard
          let plain = rows.first(where: {
            $0.stages == k && $0.mode == .pipelined && $0.slowdown == replicated.slowdown
          })
        else { continue }
        text += String(
          format: "K = %d%@: pipelined-replicas / pipelined = %.2f\n", k,
          replicated.slowdown > 1
            ? String(format: ", stage %d × %.1f", replicated.slowStage ?? 0, replicated.slowdown)
            : "",
          replicated.samplesPerSecond / plain.samplesPerSecond)
      }
      if let torch = rows.first(where: {
        $0.stages == k && $0.mode == .pipelined && $0.slowdown == 1
      }), let rate = torch.pytorchSamplesPerSecond {
        text += String(
          format: "K = %d: pipelined / PyTorch greedy at the same %d cores = %.2f\n", k,
          torch.cores, torch.samplesPerSecond / rate)
      }
    }
    text +=
      "\nOne-process modes run with as many BLAS threads as the daemon's workers use cores (the "
      + "cores column); "
      + "busy counts fresh compute only (replicated rows: each worker, a stage's replicas "
      + "joined by +); bubble = 1 − mean busy, imbalance = 1 − the busiest stage's busy. "
      + String(
        format:
          "dfa and dni train at learning rate %g (the others at 0.05), at which they do not "
          + "diverge.\n",
        feedbackLearningRate)
    return text
  }

  /// The mode, with its workers per stage when replicated ("pipelined-replicas (1+2)").
  static func label(_ row: Row) -> String {
    row.mode.rawValue
      + (row.replicas.map { " (\($0.map(String.init).joined(separator: "+")))" } ?? "")
  }

  /// Samples/s against K, one line per mode (no stage slowed).
  public static func throughputPlot(_ rows: [Row]) -> String {
    let calm = rows.filter { $0.slowdown == 1 }
    let modes = Mode.allCases.filter { m in calm.contains { $0.mode == m } }
    let series = modes.map { mode in
      SVGChart.Series(
        name: mode.rawValue,
        points: calm.filter { $0.mode == mode }.map { (Double($0.stages), $0.samplesPerSecond) })
    }
    let top = (calm.map(\.samplesPerSecond).max() ?? 1) * 1.1
    return SVGChart.render(
      panels: [SVGChart.Panel(title: "throughput", series: series)], xLabel: "stages (K)",
      yLabel: "samples/s", yRange: 0...top)
  }

  /// Test accuracy against wall-clock seconds for the time-to-accuracy race.
  public static func accuracyOverTimePlot(_ race: [TimeToAccuracy]) -> String {
    let series = race.map { r in
      SVGChart.Series(
        name: "\(r.mode) (\(r.threads) thread\(r.threads == 1 ? "" : "s"))",
        points: r.curve.map { ($0[0], $0[1] * 100) })
    }
    let low = ((race.flatMap { $0.curve.map { $0[1] * 100 } }.min() ?? 0) / 5).rounded(.down) * 5
    return SVGChart.render(
      panels: [SVGChart.Panel(title: "test accuracy over time", series: series)], xLabel: "seconds",
      yLabel: "test accuracy (%)", yRange: low...100)
  }

  /// rows as CSV.
  public static func csv(_ rows: [Row]) -> String {
    let header = [
      "stages", "mode", "slowdown", "samples_per_second", "speedup_over_one_process_e2e", "busy",
      "bubble", "theoretical_bubble", "peak_rss_mib", "mb_per_second", "test_accuracy",
    ]
    var text = header.joined(separator: ",") + "\n"
    for r in rows {
      let join = { (v: [Double]) in v.map { String(format: "%.4f", $0) }.joined(separator: ";") }
      let optional = { (v: Double?) in v.map { "\($0)" } ?? "" }
      let cells = [
        "\(r.stages)", r.mode.rawValue, "\(r.slowdown)", "\(r.samplesPerSecond)",
        "\(r.speedupOverOneProcessE2E)", join(r.busy), optional(r.bubble),
        optional(r.theoreticalBubble), join(r.peakResidentMiB), join(r.megabytesPerSecond),
        "\(r.testAccuracy)",
      ]
      text += cells.joined(separator: ",") + "\n"
    }
    return text
  }
}
