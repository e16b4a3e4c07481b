// Draws the rows-per-day charts with uPlot from the JSON the page embeds (the tables below the
// charts carry the same numbers for readers without JavaScript).
(function () {
  "use strict";
  var source = document.getElementById("chart-data");
  if (!source || typeof uPlot === "undefined") { return; }
  var charts = JSON.parse(source.textContent);
  var bars = uPlot.paths.bars({ size: [0.4, 40] });
  function day(seconds) { return new Date(seconds * 1000).toISOString().slice(5, 10); }
  charts.forEach(function (chart) {
    var target = document.querySelector('.chart[data-pipeline="' + CSS.escape(chart.pipeline) + '"]');
    if (!target) { return; }
    var options = {
      width: Math.max(320, Math.min(target.clientWidth || 900, 1100)),
      height: 240,
      scales: { x: { time: true, range: function (u, min, max) { return [min - 43200, max + 43200]; } }, y: { range: function (u, min, max) { return [0, Math.max(1, max) * 1.1]; } } },
      series: [
        { label: "day (UTC)", value: function (u, v) { return v == null ? "--" : new Date(v * 1000).toISOString().slice(0, 10); } },
        { label: "rows in table", stroke: "#2b7bd6", fill: "rgba(43,123,214,0.35)", paths: bars },
        { label: "rows loaded by runs", stroke: "#2e9e4f", width: 2, points: { show: true, size: 6 } }
      ],
      axes: [
        // whole UTC days only (uPlot would label local hours between them)
        { incrs: [86400, 7 * 86400, 28 * 86400], space: 50,
          values: function (u, splits) { return splits.map(day); } },
        { size: 70 }
      ]
    };
    var plot = new uPlot(options, [chart.x, chart.table, chart.reported], target);
    target.setAttribute("data-drawn", "1");
    target.plot = plot;
  });
}());
