"""Every page rlrec writes (a run's, a sweep's, the index's, the compare page's): its frame
(``page``: the style and the script) and its charts.

They are drawn in the browser by uPlot 1.6 (MIT; ``rlrec/assets/``), which rlrec ships inside
the package and writes into each page, so a page opens from ``file://`` with no network: 51 kB,
the smallest of the well-kept charting libraries, and it draws 100,000 points in milliseconds.
A chart is a ``<div class="rlrec-chart">`` holding its data as JSON; the page's script (below,
the same on every page) draws it with axes, ticks and labels, a legend that shows the exact
episode and value under the cursor, and zoom (drag across; double-click to zoom out).

Long runs are drawn from at most ``POINTS`` episodes per series, evenly spaced and each a real
episode (its own return and its own moving average), so what the legend shows is in the Parquet.
"""

from __future__ import annotations

import functools
import html
import json
import math
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ASSETS = Path(__file__).resolve().parent / "assets"
#: Episodes a series is drawn from at the most.
POINTS = 2000
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b")

_STYLE = """html{background:#fff}
body{font:14px/1.45 system-ui,sans-serif;margin:24px;color:#222;max-width:1280px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}
table{border-collapse:collapse;font-size:13px}td,th{padding:3px 9px;border-bottom:1px solid #ddd;
text-align:right}th{background:#f4f4f4}td.l,th.l{text-align:left}
.stats{display:flex;gap:28px;flex-wrap:wrap}.stat b{display:block;font-size:20px}
.gallery{display:flex;flex-wrap:wrap;gap:14px}.film{width:300px}.film video,.film img{width:300px;
background:#000}.film p{margin:2px 0;font-size:12px}code{background:#f4f4f4;padding:0 3px}
pre{background:#f7f7f7;padding:8px;overflow:auto;font-size:12px}.failed{color:#a00}
.ci{position:relative;width:320px;height:12px;background:#f4f4f4}.ci span{position:absolute;
top:3px;height:6px;background:#1f77b4;opacity:.5}.ci i{position:absolute;top:0;width:2px;
height:12px;background:#1f77b4}
svg text{font-size:11px;fill:#555}"""

_SCRIPT = r"""
(function () {
  function fmt(v) {
    if (v == null) return "-";
    return Math.abs(v) >= 1e5 ? v.toExponential(4) : String(+v.toPrecision(7));
  }
  function draw(el) {
    var spec = JSON.parse(el.dataset.chart), lines = [], bands = [];
    spec.series.forEach(function (s, i) {
      var colour = s.colour || "#555";
      lines.push({label: s.label, stroke: colour, width: s.width || 1.6, x: s.x, y: s.y});
      if (s.low) {
        lines.push({label: s.label + " (band low)", stroke: "transparent", x: s.x, y: s.low});
        lines.push({label: s.label + " (band high)", stroke: "transparent", x: s.x, y: s.high});
        bands.push({series: [lines.length, lines.length - 1], fill: colour + "26"});
      }
    });
    var data = uPlot.join(lines.map(function (s) { return [s.x, s.y]; }));
    var series = [{label: spec.x_label,
                   value: function (u, v) { return v == null ? "-" : String(v); }}];
    lines.forEach(function (s) {
      series.push({label: s.label, stroke: s.stroke, width: s.width, spanGaps: true,
                   points: {show: false}, value: function (u, v) { return fmt(v); }});
    });
    var width = Math.max(320, Math.min(el.clientWidth || 900, 1200));
    el.uplot = new uPlot({
      width: width, height: spec.height || 280, series: series, bands: bands,
      scales: {x: {time: false}},
      axes: [{label: spec.x_label}, {label: spec.y_label}],
      cursor: {drag: {x: true, y: false}},
      legend: {live: true}
    }, data, el);
  }
  window.rlrecCharts = function (root) {
    (root || document).querySelectorAll(".rlrec-chart:not([data-drawn])").forEach(function (el) {
      el.dataset.drawn = "1";
      draw(el);
    });
  };
  // films load when scrolled into view: a page of 200 films fetches none of them at first
  window.rlrecFilms = function (root) {
    var seen = new IntersectionObserver(function (entries) {
      entries.forEach(function (e) {
        if (!e.isIntersecting) return;
        e.target.preload = "auto";
        e.target.load();
        seen.unobserve(e.target);
      });
    }, {rootMargin: "200px"});
    (root || document).querySelectorAll("video[preload=none]").forEach(function (v) {
      seen.observe(v);
    });
  };
  // tables: a click on a column's head sorts by it (again: the other way); a filter box and a
  // status menu (data-for: the table's id) hide the rows that do not match
  function cellValue(row, col) {
    var v = row.cells[col].dataset.v, n = parseFloat(v);
    return v === "" || v == null ? null : (isNaN(n) || String(n) !== String(+v) ? v : n);
  }
  function filter(id) {
    var table = document.getElementById(id);
    var box = document.querySelector('.rlrec-filter[data-for="' + id + '"]');
    var menu = document.querySelector('.rlrec-status[data-for="' + id + '"]');
    var words = box ? box.value.toLowerCase().trim() : "", status = menu ? menu.value : "";
    Array.prototype.forEach.call(table.tBodies[0].rows, function (row) {
      row.hidden = !((!words || row.textContent.toLowerCase().indexOf(words) >= 0) &&
                     (!status || row.dataset.status === status));
    });
  }
  window.rlrecTables = function (root) {
    (root || document).querySelectorAll("table.rlrec-table").forEach(function (table) {
      table.querySelectorAll("thead th").forEach(function (th, col) {
        if (th.dataset.nosort) return;
        th.style.cursor = "pointer";
        th.addEventListener("click", function () {
          var up = th.dataset.sort !== "up";
          table.querySelectorAll("thead th").forEach(function (h) { delete h.dataset.sort; });
          th.dataset.sort = up ? "up" : "down";
          var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
          rows.sort(function (a, b) {
            var x = cellValue(a, col), y = cellValue(b, col);
            if (x === null || y === null) return (x === null) - (y === null);  // blanks last
            var c = typeof x === "number" && typeof y === "number" ? x - y
                    : String(x).localeCompare(String(y));
            return up ? c : -c;
          });
          rows.forEach(function (r) { body.appendChild(r); });
        });
      });
    });
    (root || document).querySelectorAll(".rlrec-filter, .rlrec-status").forEach(function (el) {
      el.addEventListener("input", function () { filter(el.dataset.for); });
    });
  };
  document.addEventListener("DOMContentLoaded", function () {
    window.rlrecCharts();
    window.rlrecFilms();
    window.rlrecTables();
  });
})();
"""


@functools.cache
def page_assets() -> str:
    """What a page needs to draw its charts and load its films lazily, written into it once:
    uPlot's style and script, and rlrec's."""
    style = (ASSETS / "uPlot.min.css").read_text()
    library = (ASSETS / "uPlot.iife.min.js").read_text()
    # "</" ends a script element early wherever it appears in it
    library = library.replace("</", "<\\/")
    return (
        f"<style>{style}.rlrec-chart{{margin:6px 0 14px}}</style>"
        f"<script>{library}</script><script>{_SCRIPT}</script>"
    )


def sample(n: int, points: int = POINTS) -> np.ndarray:
    """At most ``points`` evenly spaced indices of ``n``, the first and the last included.

    >>> sample(5).tolist(), sample(10, 4).tolist()
    ([0, 1, 2, 3, 4], [0, 3, 6, 9])
    """
    if not n:
        return np.empty(0, int)
    return np.unique(np.linspace(0, n - 1, min(n, points)).round().astype(int))


def moving(values: np.ndarray, window: int) -> np.ndarray:
    """The mean of the finite values among the last ``window`` (NaN where there are none).

    >>> moving(np.array([1.0, 3.0, np.nan, 5.0]), 2).tolist()
    [1.0, 2.0, 3.0, 5.0]
    """
    finite = np.isfinite(values)
    sums = np.cumsum(np.insert(np.where(finite, values, 0.0), 0, 0.0))
    counts = np.cumsum(np.insert(finite.astype(float), 0, 0.0))
    end = np.arange(1, len(values) + 1)
    start = np.maximum(end - window, 0)
    taken = counts[end] - counts[start]
    return np.where(taken > 0, (sums[end] - sums[start]) / np.maximum(taken, 1), np.nan)


def across_seeds(runs: list[np.ndarray], window: int) -> tuple[np.ndarray, ...]:
    """Per episode, the mean over runs of their moving averages, and the runs' min and max."""
    n = min(len(r) for r in runs)
    stacked = np.stack([moving(r[:n], window) for r in runs])
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a column with nothing finite: NaN
        return np.nanmean(stacked, 0), np.nanmin(stacked, 0), np.nanmax(stacked, 0)


def returns_series(returns: np.ndarray, window: int, label: str = "") -> list[dict[str, Any]]:
    """A run's returns (faint) and their moving average, which says the window it used."""
    idx = sample(len(returns))
    shown = min(window, len(returns))
    name = f"{label} " if label else ""
    return [
        series(f"{name}return", idx, returns[idx], colour="#9ab", width=0.8),
        series(f"{name}mean of last {shown}", idx, moving(returns, window)[idx], colour=COLOURS[0]),
    ]


def series(
    label: str,
    x: Sequence[float] | np.ndarray,
    y: Sequence[float] | np.ndarray,
    colour: str = COLOURS[0],
    width: float = 1.6,
    band: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, Any]:
    """One line of a chart (``band``: its low and high at the same x)."""
    line = {"label": label, "x": _numbers(x), "y": _numbers(y), "colour": colour, "width": width}
    if band is not None:
        line |= {"low": _numbers(band[0]), "high": _numbers(band[1])}
    return line


def chart(lines: list[dict[str, Any]], x_label: str, y_label: str, height: int = 280) -> str:
    """The ``<div>`` a page's script draws ``lines`` into; a sentence where nothing is finite."""
    if not any(v is not None for line in lines for v in line["y"]):
        return "<p>No finite value to draw.</p>"
    spec = {"series": lines, "x_label": x_label, "y_label": y_label, "height": height}
    data = json.dumps(spec, separators=(",", ":"), allow_nan=False)
    return f'<div class="rlrec-chart" data-chart="{html.escape(data, quote=True)}"></div>'


def _numbers(values: Any) -> list[float | int | None]:
    """Plain numbers for JSON: NaN and infinities become None (a gap), whole x values ints."""
    out: list[float | int | None] = []
    for v in np.asarray(values, dtype=float).tolist():
        if not math.isfinite(v):
            out.append(None)
        elif v == int(v) and abs(v) < 2**53:
            out.append(int(v))
        else:
            out.append(v)
    return out


def escape(value: Any) -> str:
    """``value`` as HTML text (or an attribute's value)."""
    return html.escape(str(value), quote=True)


def page(title: str, parts: Iterable[str]) -> str:
    """A whole page: rlrec's style, the chart and table script, then ``parts``."""
    body = "\n".join(parts)
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style>{page_assets()}</head><body>\n{body}\n</body></html>\n"
    )
