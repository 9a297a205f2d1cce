import Foundation

/// A timeline from Chrome trace spans: one row per process, one coloured box per span, over a
/// window of the run.
public enum GanttChart {
  static let colors = [
    "forward": "#1f77b4", "backward": "#d62728", "update": "#2ca02c", "replay": "#9467bd",
    "eval": "#17becf",
    "receive-wait": "#dddddd", "gradient-wait": "#f4c7c3", "send-blocked": "#ff7f0e",
    "straggle": "#8c564b",
  ]

  /// Spans of `events` (microseconds) between `from` and `to`, rows labelled by pid.
  public static func render(
    _ events: [(pid: Int, name: String, start: Double, duration: Double)],
    rows: [(pid: Int, label: String)], from: Double, to: Double, title: String
  ) -> String {
    let (left, width, rowHeight) = (80.0, 900.0, 26.0)
    let height = Double(rows.count) * rowHeight + 70
    func x(_ t: Double) -> Double { left + (min(max(t, from), to) - from) / (to - from) * width }
    var svg =
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(left + width + 20))\" "
      + "height=\"\(Int(height))\" font-family=\"sans-serif\" font-size=\"11\">\n"
    svg +=
      "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"\(left)\" y=\"16\" "
      + "font-weight=\"bold\">\(title)</text>\n"
    for (i, row) in rows.enumerated() {
      let y = 26 + Double(i) * rowHeight
      svg += "<text x=\"\(left - 6)\" y=\"\(y + 15)\" text-anchor=\"end\">\(row.label)</text>\n"
      for e in events where e.pid == row.pid && e.start + e.duration > from && e.start < to {
        let color = colors[e.name] ?? "#999999"
        svg +=
          "<rect x=\"\(x(e.start))\" y=\"\(y)\" "
          + "width=\"\(max(0.5, x(e.start + e.duration) - x(e.start)))\" "
          + "height=\"\(rowHeight - 6)\" fill=\"\(color)\"><title>\(e.name)</title></rect>\n"
      }
    }
    let axisY = 26 + Double(rows.count) * rowHeight + 12
    svg +=
      "<text x=\"\(left)\" y=\"\(axisY)\">0 ms</text><text x=\"\(left + width)\" y=\"\(axisY)\" "
      + "text-anchor=\"end\">\(String(format: "%.0f", (to - from) / 1000)) ms</text>\n"
    var legendX = left + 60
    for name in [
      "forward", "backward", "update", "replay", "receive-wait", "gradient-wait", "send-blocked",
      "straggle",
    ] {
      svg +=
        "<rect x=\"\(legendX)\" y=\"\(axisY - 9)\" width=\"10\" height=\"10\" "
        + "fill=\"\(colors[name]!)\"/><text x=\"\(legendX + 13)\" y=\"\(axisY)\">\(name)</text>\n"
      legendX += Double(name.count) * 6.5 + 30
    }
    return svg + "</svg>\n"
  }
}
