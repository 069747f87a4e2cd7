"""``DIR/compare.html``: the runs ticked on the index, side by side.

Their return curves overlaid (each run's moving average; a sweep's mean over its seeds with the
band of their spread), their statistics side by side with each one's difference of means from
the first and its 95% CI (Welch's t: unequal variances and sizes), and their films of one
episode index next to each other, played together.

The page is the same for every choice: the runs are named in its address
(``compare.html#<key>,<key>``) and their data comes from the scripts the index wrote beside it,
which a ``file://`` page may load where it may not fetch files.
"""

from __future__ import annotations

from pathlib import Path

from rlrec import charts
from rlrec.rundir import write_text

_BODY = """
<h1>Compare runs</h1>
<p id="what">Loading the runs named in the address...</p>
<h2>Returns</h2>
<div id="curves"></div>
<p>Each run's moving average of its returns (a sweep: the mean over its seeds, with the band of
their spread). Drag across to zoom in, double-click to zoom out; the legend shows the values at
the cursor.</p>
<h2>Statistics</h2>
<table class="rlrec-table" id="stats"><thead><tr><th class="l">run</th><th>episodes</th>
<th>mean return</th><th>std</th><th>95% CI of the mean</th><th>difference from the first</th>
<th>95% CI of the difference (Welch)</th></tr></thead><tbody></tbody></table>
<p>A sweep counts its seeds: n is the number of runs and the mean and std are over their means.
</p>
<h2>Films of the same episode</h2>
<p><label>episode <select id="episode"></select></label>
<button id="play">Play together from the start</button></p>
<div class="gallery" id="films"></div>
"""

_SCRIPT = r"""
(function () {
  // Student's t: log-gamma (Lanczos), the density, its integral (Simpson), the quantile (Newton)
  var G = [676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059,
           12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6,
           1.5056327351493116e-7];
  function lgamma(x) {
    if (x < 0.5) return Math.log(Math.PI / Math.sin(Math.PI * x)) - lgamma(1 - x);
    x -= 1;
    var a = 0.99999999999980993, t = x + 7.5;
    for (var i = 0; i < 8; i++) a += G[i] / (x + i + 1);
    return 0.5 * Math.log(2 * Math.PI) + (x + 0.5) * Math.log(t) - t + Math.log(a);
  }
  function tpdf(x, df) {
    return Math.exp(lgamma((df + 1) / 2) - lgamma(df / 2) - 0.5 * Math.log(df * Math.PI) -
                    (df + 1) / 2 * Math.log(1 + x * x / df));
  }
  function tcdf(x, df) {
    var n = 2000, h = x / n, s = tpdf(0, df) + tpdf(x, df);
    for (var i = 1; i < n; i++) s += (i % 2 ? 4 : 2) * tpdf(i * h, df);
    return 0.5 + s * h / 3;
  }
  function tquantile(q, df) {
    var z = 1.959963984540054, t = z + (z * z * z + z) / (4 * df);
    for (var k = 0; k < 30; k++) {
      var step = (tcdf(t, df) - q) / tpdf(t, df);
      t -= step;
      if (Math.abs(step) < 1e-12) break;
    }
    return t;
  }
  window.rlrecTQuantile = tquantile;
  function welch(a, b) {  // the difference a - b and its 95% interval
    if (!(a.n >= 2 && b.n >= 2) || a.std == null || b.std == null) return null;
    var va = a.std * a.std / a.n, vb = b.std * b.std / b.n, se = Math.sqrt(va + vb);
    var diff = a.mean - b.mean;
    if (se === 0) return {diff: diff, low: diff, high: diff};
    var df = (va + vb) * (va + vb) / (va * va / (a.n - 1) + vb * vb / (b.n - 1));
    var half = tquantile(0.975, df) * se;
    return {diff: diff, low: diff - half, high: diff + half, df: df};
  }
  window.rlrecWelch = welch;
  function num(v) { return v == null ? "n/a" : v.toFixed(2); }
  function cell(text, value, left) {
    var td = document.createElement("td");
    td.textContent = text;
    td.dataset.v = value == null ? "" : value;
    if (left) td.className = "l";
    return td;
  }
  var keys = decodeURIComponent(location.hash.slice(1)).split(",").filter(Boolean);
  var left = keys.length;
  if (!keys.length) document.getElementById("what").textContent =
    "No run chosen: tick two or more runs on the index, then Compare.";
  keys.forEach(function (key) {
    var script = document.createElement("script");
    script.src = ".rlrec-index/data/" + key + ".js";
    script.onload = script.onerror = function () { if (--left === 0) show(); };
    document.head.appendChild(script);
  });
  function show() {
    var data = window.rlrecData || {}, runs = keys.filter(function (k) { return data[k]; })
      .map(function (k) { return data[k]; });
    var missing = keys.length - runs.length;
    document.getElementById("what").textContent = runs.map(function (r) { return r.label; })
      .join(" · ") + (missing ? " (" + missing + " not found: build the index again)" : "");
    var colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b"];
    var lines = [];
    runs.forEach(function (r, i) {
      if (!r.curve) return;
      var line = Object.assign({}, r.curve, {colour: colours[i % colours.length]});
      line.label = r.label + (r.window ? " (mean of last " + r.window + ")" : " (mean over seeds)");
      lines.push(line);
    });
    var box = document.getElementById("curves");
    if (lines.length) {
      var div = document.createElement("div");
      div.className = "rlrec-chart";
      div.dataset.chart = JSON.stringify({series: lines, x_label: "episode",
                                          y_label: "return (moving average)", height: 320});
      box.appendChild(div);
      window.rlrecCharts(box);
    } else box.textContent = "No episode finished.";
    var body = document.querySelector("#stats tbody");
    runs.forEach(function (r, i) {
      var tr = document.createElement("tr"), ci = null;
      if (r.n >= 2 && r.std != null) {
        var half = tquantile(0.975, r.n - 1) * r.std / Math.sqrt(r.n);
        ci = [r.mean - half, r.mean + half];
      }
      var d = i ? welch(r, runs[0]) : null;
      tr.appendChild(cell(r.label, r.label, true));
      tr.appendChild(cell(String(r.n), r.n));
      tr.appendChild(cell(num(r.mean), r.mean));
      tr.appendChild(cell(num(r.std), r.std));
      tr.appendChild(cell(ci ? "[" + num(ci[0]) + ", " + num(ci[1]) + "]" : "n/a", ci && ci[0]));
      tr.appendChild(cell(i ? (d ? num(d.diff) : "n/a") : "(the first)", d && d.diff));
      tr.appendChild(cell(d ? "[" + num(d.low) + ", " + num(d.high) + "]" : "", d && d.low));
      body.appendChild(tr);
    });
    var shared = null;
    runs.forEach(function (r) {
      var mine = Object.keys(r.films || {});
      shared = shared === null ? mine
               : shared.filter(function (e) { return mine.indexOf(e) >= 0; });
    });
    var episodes = (shared && shared.length ? shared : []).map(Number).sort(function (a, b) {
      return a - b;
    });
    var menu = document.getElementById("episode"), films = document.getElementById("films");
    episodes.forEach(function (e) {
      var option = document.createElement("option");
      option.textContent = option.value = String(e);
      menu.appendChild(option);
    });
    function showFilms() {
      films.innerHTML = "";
      runs.forEach(function (r) {
        var src = (r.films || {})[menu.value];
        if (!src) return;
        var film = document.createElement("div"), video = document.createElement("video");
        film.className = "film";
        video.src = src; video.muted = true; video.controls = true; video.preload = "auto";
        var caption = document.createElement("p");
        caption.textContent = r.label + " · episode " + menu.value;
        film.appendChild(video); film.appendChild(caption); films.appendChild(film);
      });
    }
    if (episodes.length) showFilms();
    else films.textContent = "The chosen runs filmed no episode in common.";
    menu.addEventListener("change", showFilms);
    document.getElementById("play").addEventListener("click", function () {
      var videos = Array.prototype.slice.call(films.querySelectorAll("video"));
      videos.forEach(function (v) { v.pause(); v.currentTime = 0; });
      videos.forEach(function (v) { v.play(); });
    });
    document.body.dataset.ready = "1";
  }
})();
"""


def write_compare_page(path: Path) -> Path:
    """Write the compare page to ``path`` (the same whatever is compared)."""
    write_text(path, charts.page("Compare runs", [_BODY, f"<script>{_SCRIPT}</script>"]))
    return path
