import Foundation

/// Minimal SVG line charts: one panel per group, one polyline per series, shared y axis.
public enum SVGChart {
  public struct Series: Sendable {
    public var name: String
    /// (x, y) points in data units.
    public var points: [(Double, Double)]
    public init(name: String, points: [(Double, Double)]) {
      self.name = name
      self.points = points
    }
  }

  public struct Panel: Sendable {
    public var title: String
    public var series: [Series]
    public init(title: String, series: [Series]) {
      self.title = title
      self.series = series
    }
  }

  static let palette = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf",
  ]

  /// Panels side by side; y runs over `yRange`, x over each panel's own points.
  public static func render(
    panels: [Panel], xLabel: String, yLabel: String, yRange: ClosedRange<Double>
  ) -> String {
    let (panelWidth, height, margin) = (320.0, 260.0, 45.0)
    let longest = panels.flatMap { $0.series.map(\.name.count) }.max() ?? 10
    let width = Double(panels.count) * panelWidth + 40 + Double(longest) * 6.5
    var svg =
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" "
      + "height=\"\(Int(height + 40))\" font-family=\"sans-serif\" font-size=\"11\">\n"
    svg += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    var names: [String] = []
    for (p, panel) in panels.enumerated() {
      let x0 = Double(p) * panelWidth + margin
      let plotWidth = panelWidth - margin - 15
      let plotHeight = height - 2 * margin
      let xs = panel.series.flatMap { $0.points.map(\.0) }
      let (xMin, xMax) = (xs.min() ?? 0, max(xs.max() ?? 1, (xs.min() ?? 0) + 1))
      func px(_ x: Double) -> Double { x0 + (x - xMin) / (xMax - xMin) * plotWidth }
      func py(_ y: Double) -> Double {
        margin + (1 - (y - yRange.lowerBound) / (yRange.upperBound - yRange.lowerBound))
          * plotHeight
      }
      svg +=
        "<text x=\"\(x0 + plotWidth / 2)\" y=\"20\" text-anchor=\"middle\" "
        + "font-weight=\"bold\">\(escape(panel.title))</text>\n"
      svg +=
        "<rect x=\"\(x0)\" y=\"\(margin)\" width=\"\(plotWidth)\" height=\"\(plotHeight)\" "
        + "fill=\"none\" stroke=\"#999\"/>\n"
      for t in 0...4 {
        let y = yRange.lowerBound + Double(t) / 4 * (yRange.upperBound - yRange.lowerBound)
        svg +=
          "<line x1=\"\(x0)\" x2=\"\(x0 + plotWidth)\" y1=\"\(py(y))\" y2=\"\(py(y))\" "
          + "stroke=\"#eee\"/>"
        svg +=
          "<text x=\"\(x0 - 4)\" y=\"\(py(y) + 4)\" "
          + "text-anchor=\"end\">\(String(format: "%.1f", y))</text>\n"
      }
      // The x values themselves when they are a few integers (stages, K); else 5 even ticks.
      let integral = xs.allSatisfy { $0 == $0.rounded() } && Set(xs).count <= 10
      let ticks =
        integral ? Set(xs).sorted() : (0...4).map { xMin + Double($0) / 4 * (xMax - xMin) }
      for x in ticks {
        svg +=
          "<text x=\"\(px(x))\" y=\"\(margin + plotHeight + 14)\" "
          + "text-anchor=\"middle\">\(Int(x.rounded()))</text>\n"
      }
      svg +=
        "<text x=\"\(x0 + plotWidth / 2)\" y=\"\(height + 5)\" "
        + "text-anchor=\"middle\">\(escape(xLabel))</text>\n"
      for series in panel.series {
        if !names.contains(series.name) { names.append(series.name) }
        let color = palette[names.firstIndex(of: series.name)! % palette.count]
        let path = series.points.map {
          "\(px($0.0)),\(py(min(max($0.1, yRange.lowerBound), yRange.upperBound)))"
        }.joined(separator: " ")
        svg +=
          "<polyline points=\"\(path)\" fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\"/>\n"
        for (x, y) in series.points {
          svg +=
            "<circle cx=\"\(px(x))\" "
            + "cy=\"\(py(min(max(y, yRange.lowerBound), yRange.upperBound)))\" r=\"3\" "
            + "fill=\"\(color)\"/>\n"
        }
      }
    }
    svg +=
      "<text transform=\"translate(12,\(height / 2)) rotate(-90)\" "
      + "text-anchor=\"middle\">\(escape(yLabel))</text>\n"
    let legendX = Double(panels.count) * panelWidth + 10
    for (i, name) in names.enumerated() {
      let y = 50.0 + Double(i) * 18
      svg +=
        "<rect x=\"\(legendX)\" y=\"\(y - 9)\" width=\"12\" height=\"12\" "
        + "fill=\"\(palette[i % palette.count])\"/>"
      svg += "<text x=\"\(legendX + 18)\" y=\"\(y + 1)\">\(escape(name))</text>\n"
    }
    return svg + "</svg>\n"
  }

  static func escape(_ text: String) -> String {
    text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
      .replacingOccurrences(of: ">", with: "&gt;")
  }
}
