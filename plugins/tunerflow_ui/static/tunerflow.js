// Charts for the tunerflow pages, drawn by the vendored Chart.js from JSON a page embeds in a
// <script type="application/json"> element (never from text put into script source).
"use strict";
(function () {
  const COLORS = ["#0b6bcb", "#cf222e", "#1a7f37", "#9a6700", "#8250df", "#bc4c00", "#1b7c83",
    "#6e7781", "#d63384", "#3d5a80"];

  function data(id) {
    const node = document.getElementById(id);
    return node ? JSON.parse(node.textContent) : null;
  }

  // spec: {series: [{label, points: [[x, y], ...], dashed}], x: "step", y: "loss", logY: false,
  //        kind: "line" | "bar", labels: [...] (bar only)}
  function draw(canvas) {
    const spec = data(canvas.dataset.chart);
    if (!spec || typeof Chart === "undefined") return;
    const kind = spec.kind || "line";
    const datasets = spec.series.map((s, i) => ({
      label: s.label,
      data: kind === "bar" ? s.values : s.points.map(([x, y]) => ({ x, y })),
      borderColor: COLORS[i % COLORS.length],
      backgroundColor: kind === "bar" ? COLORS[i % COLORS.length] + "99" : COLORS[i % COLORS.length],
      borderDash: s.dashed ? [6, 4] : [],
      pointRadius: kind === "line" && s.points.length > 60 ? 0 : 2,
      borderWidth: 1.5,
      tension: 0,
    }));
    new Chart(canvas, {
      type: kind,
      data: kind === "bar" ? { labels: spec.labels, datasets } : { datasets },
      options: {
        animation: false,
        maintainAspectRatio: false,
        parsing: kind !== "line",
        interaction: { mode: "nearest", intersect: false },
        scales: kind === "bar" ? { y: { title: { display: !!spec.y, text: spec.y } } } : {
          x: { type: "linear", title: { display: true, text: spec.x || "step" } },
          y: { type: spec.logY ? "logarithmic" : "linear", title: { display: !!spec.y, text: spec.y } },
        },
        plugins: { legend: { position: "bottom", labels: { boxWidth: 12 } } },
      },
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    document.querySelectorAll("canvas[data-chart]").forEach(draw);
  });
})();
