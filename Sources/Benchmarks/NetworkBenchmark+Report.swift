import Foundation

extension NetworkBenchmark {
  /// report.md: per profile, every mode's samples/s, its ratio to e2e across processes and to
  /// GPipe, bytes per sample each way, busy and waiting per stage, test accuracy.
  public static func report(_ rows: [Row]) -> String {
    var text = ""
    for profile in unique(rows.map(\.profile)) {
      let group = rows.filter { $0.profile == profile }
      let rate = { (mode: String) in
        group.first { $0.mode == mode && $0.wireFormat == "f32" }?.samplesPerSecond
      }
      text += "### \(profile)\n\nLink: \(group[0].mechanism).\n\n"
      text +=
        "| mode | wire | samples/s | × e2e | × GPipe | bytes/sample down (per stage) | up | busy | "
        + "waiting | test accuracy | epoch |\n|---|---|---|---|---|---|---|---|---|---|---|\n"
      for r in group {
        let ratio = { (base: Double?) in
          base.map { String(format: "%.2f", r.samplesPerSecond / $0) } ?? "–"
        }
        let list = { (values: [Double], format: String) in
          values.map { String(format: format, $0) }.joined(separator: " ")
        }
        text +=
          "| \(r.mode) | \(r.wireFormat) | \(String(format: "%.0f", r.samplesPerSecond)) | "
          + "\(ratio(rate("e2e-distributed"))) | \(ratio(rate("gpipe"))) | "
        text +=
          "\(list(r.bytesPerSampleDown, "%.0f")) | \(list(r.bytesPerSampleUp, "%.0f")) | "
          + "\(list(r.busy.map { $0 * 100 }, "%.0f%%")) | "
          + "\(list(r.wait.map { $0 * 100 }, "%.0f%%")) | "
        text += String(format: "%.2f %% | %.1f s |\n", r.testAccuracy * 100, r.seconds)
      }
      if let replicated = rate("pipelined-replicas"), let plain = rate("pipelined") {
        text += String(format: "\npipelined-replicas / pipelined = %.2f\n", replicated / plain)
      }
      text += "\n"
    }
    let race = rows.filter { $0.finalAccuracy != nil }
    if !race.isEmpty {
      text +=
        "### Time to the target accuracy\n\n| link | mode | wire | time | epochs | last accuracy "
        + "|\n|---|---|---|---|---|---|\n"
      for r in race {
        let time = r.secondsToTarget.map { String(format: "%.1f s", $0) } ?? "not reached"
        text +=
          "| \(r.profile) | \(r.mode) | \(r.wireFormat) | \(time) | "
          + "\(r.epochsToTarget.map(String.init) ?? "–") | "
          + "\(String(format: "%.2f %%", (r.finalAccuracy ?? 0) * 100)) |\n"
      }
    }
    return text
  }

  /// samples/s against the link's one-way delay (`delay`) or rate (`bandwidth`), a line per mode
  /// (f32 on the wire; the pipelined mode also per reduced format).
  public static func plot(_ rows: [Row], profiles: [LinkProfile], against axis: String) -> String {
    let byName = Dictionary(profiles.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
    let shaped = rows.filter { !(byName[$0.profile]?.isLoopback ?? true) }
    let x = { (r: Row) -> Double in
      let p = byName[r.profile]!
      return axis == "delay" ? p.delayMilliseconds : (p.megabitsPerSecond ?? 10_000)
    }
    let series = unique(shaped.map { "\($0.mode) \($0.wireFormat)" }).map { label in
      SVGChart.Series(
        name: label,
        points: shaped.filter { "\($0.mode) \($0.wireFormat)" == label }.map {
          (x($0), $0.samplesPerSecond)
        }.sorted { $0.0 < $1.0 })
    }
    let top = (shaped.map(\.samplesPerSecond).max() ?? 1) * 1.1
    return SVGChart.render(
      panels: [
        .init(
          title: "samples/s against the link's \(axis == "delay" ? "one-way delay" : "rate")",
          series: series)
      ],
      xLabel: axis == "delay" ? "one-way delay (ms)" : "rate (Mb/s)", yLabel: "samples/s",
      yRange: 0...max(top, 1))
  }

  static func unique(_ values: [String]) -> [String] {
    var seen = Set<String>()
    return values.filter { seen.insert($0).inserted }
  }
}
