// Renders every [data-chart] element from the JSON in the <script> named by data-source, on load
// and after each htmx swap. Data come from json_script, so names are never parsed as HTML.
// Kinds: bar ([{label, value}]), histogram ({edges, counts}), cdf ({x, p}), radar ({indicators, series}),
// effect ({x, mean, low, high}: a mean per parameter value with its interval).
(function () {
  var palette = ["#3b6fd8", "#e07b39", "#2f9e6e", "#b2458f"];
  var builders = {
    bar: function (rows) {
      return {
        grid: { left: 40, right: 16, top: 24, bottom: 8, containLabel: true },
        tooltip: { trigger: "axis" },
        xAxis: { type: "category", data: rows.map(function (r) { return r.label; }),
                 axisLabel: { rotate: 35, fontSize: 10, width: 140, overflow: "truncate" } },
        yAxis: { type: "value", name: "%" },
        series: [{ type: "bar", data: rows.map(function (r) { return r.value; }), itemStyle: { color: palette[0] } }]
      };
    },
    histogram: function (d, el) {
      var edge = function (v) { return Number.isInteger(v) ? String(v) : v.toPrecision(4); };
      var labels = d.counts.map(function (_, i) { return edge(d.edges[i]) + "–" + edge(d.edges[i + 1]); });
      return {
        grid: { left: 40, right: 16, top: 24, bottom: 8, containLabel: true },
        tooltip: { trigger: "axis" },
        xAxis: { type: "category", data: labels, name: el.dataset.unit || "", axisLabel: { fontSize: 9 } },
        yAxis: { type: "value", name: el.dataset.counts || "requests" },
        series: [{ type: "bar", data: d.counts, barCategoryGap: "5%", itemStyle: { color: palette[0] } }]
      };
    },
    cdf: function (d, el) {
      return {
        grid: { left: 40, right: 16, top: 24, bottom: 8, containLabel: true },
        tooltip: { trigger: "axis" },
        xAxis: { type: "value", name: el.dataset.unit || "", scale: true },
        yAxis: { type: "value", min: 0, max: 1, name: "fraction" },
        series: [{ type: "line", showSymbol: false, data: d.x.map(function (x, i) { return [x, d.p[i]]; }),
                   itemStyle: { color: palette[1] } }]
      };
    },
    effect: function (d, el) {
      var band = function (values) { return d.x.map(function (x, i) { return [x, values[i]]; }); };
      return {
        grid: { left: 40, right: 16, top: 24, bottom: 8, containLabel: true },
        tooltip: { trigger: "axis" },
        xAxis: { type: "value", name: el.dataset.unit || "", scale: true },
        yAxis: { type: "value", scale: true },
        series: [
          { name: "mean", type: "line", data: band(d.mean), itemStyle: { color: palette[0] } },
          { name: "95% low", type: "line", data: band(d.low), showSymbol: false, lineStyle: { type: "dashed", opacity: 0.6 }, itemStyle: { color: palette[0] } },
          { name: "95% high", type: "line", data: band(d.high), showSymbol: false, lineStyle: { type: "dashed", opacity: 0.6 }, itemStyle: { color: palette[0] } }
        ]
      };
    },
    radar: function (d) {
      return {
        tooltip: {},
        legend: { bottom: 0 },
        radar: { indicator: d.indicators, radius: "62%" },
        series: [{ type: "radar", data: d.series.map(function (s, i) {
          return { name: s.name, value: s.values.map(function (v) { return v === null ? 0 : v; }),
                   itemStyle: { color: palette[i % palette.length] } };
        }) }]
      };
    }
  };
  function render(root) {
    if (!window.echarts) return;
    root.querySelectorAll("[data-chart]").forEach(function (el) {
      var source = document.getElementById(el.dataset.source);
      var build = builders[el.dataset.chart];
      if (!source || !build) return;
      var chart = echarts.getInstanceByDom(el) || echarts.init(el, null, { renderer: "svg" });
      chart.setOption(build(JSON.parse(source.textContent), el), true);
    });
  }
  document.addEventListener("DOMContentLoaded", function () { render(document); });
  document.addEventListener("htmx:afterSettle", function (e) { render(e.target); });
  window.addEventListener("resize", function () {
    document.querySelectorAll("[data-chart]").forEach(function (el) {
      var chart = window.echarts && echarts.getInstanceByDom(el);
      if (chart) chart.resize();
    });
  });
})();
