// Renders every [data-chart] element from the JSON in its data-source <script>, on load and
// after each htmx swap. Data come from json_script, so model names are never parsed as HTML.
(function () {
  function render(root) {
    if (!window.echarts) return;
    root.querySelectorAll("[data-chart]").forEach(function (el) {
      var source = document.getElementById(el.dataset.source);
      if (!source) return;
      var rows = JSON.parse(source.textContent);
      var chart = echarts.getInstanceByDom(el) || echarts.init(el, null, { renderer: "svg" });
      chart.setOption({
        grid: { left: 40, right: 16, top: 24, bottom: 8, containLabel: true },
        tooltip: { trigger: "axis" },
        xAxis: { type: "category", data: rows.map(function (r) { return r.label; }),
                 axisLabel: { rotate: 35, fontSize: 10, width: 140, overflow: "truncate" } },
        yAxis: { type: "value", name: "%" },
        series: [{ type: "bar", data: rows.map(function (r) { return r.value; }), itemStyle: { color: "#3b6fd8" } }]
      }, true);
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
