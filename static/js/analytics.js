// Analytics pages: draws every [data-analytics-chart] element with ECharts from the JSON that the page passes
// with json_script (element id in data-source), so names are never parsed as HTML and no script is inline.
// Kinds (apps/analytics/catalog.py builds the data): bars (horizontal, with 95% interval whiskers), line (one
// series per figure with its interval as whiskers), scatter (labelled points, the Pareto front highlighted).
// A bar, point or series that includes simulated data is drawn lighter and named "(simulated)".
(function () {
  var BLUE = "#3b6fd8", LIGHT = "#a9bfe9", ORANGE = "#e07b39";
  var FONT = 13;

  function fmt(value) {
    if (value === null || value === undefined) return "–";
    return Number(value).toLocaleString("en", { maximumFractionDigits: Math.abs(value) >= 100 ? 1 : 3 });
  }

  function axisStyle(name, extra) {
    return Object.assign({
      name: name, nameLocation: "middle", nameGap: 34, nameTextStyle: { fontSize: FONT, color: "#333" },
      axisLabel: { fontSize: 12, color: "#333", formatter: function (v) { return typeof v === "number" ? fmt(v) : v; } }
    }, extra || {});
  }

  function whiskers(low, high, vertical) {
    // A custom series: a line from low to high on each category, with caps (horizontal bars: along x;
    // a line chart: along y at each category).
    var data = [];
    low.forEach(function (l, i) { if (l !== null && high[i] !== null) data.push([l, high[i], i]); });
    return {
      type: "custom", name: "95% interval", silent: true, z: 3, data: data,
      encode: vertical ? { x: 2, y: [0, 1] } : { x: [0, 1], y: 2 },
      renderItem: function (params, api) {
        var at = function (value) { return vertical ? api.coord([api.value(2), value]) : api.coord([value, api.value(2)]); };
        var a = at(api.value(0)), b = at(api.value(1)), cap = 6, style = { stroke: "#222", lineWidth: 1.5 };
        var capAt = function (p) {
          return vertical ? { x1: p[0] - cap, y1: p[1], x2: p[0] + cap, y2: p[1] } : { x1: p[0], y1: p[1] - cap, x2: p[0], y2: p[1] + cap };
        };
        return { type: "group", children: [
          { type: "line", shape: { x1: a[0], y1: a[1], x2: b[0], y2: b[1] }, style: style },
          { type: "line", shape: capAt(a), style: style },
          { type: "line", shape: capAt(b), style: style }
        ] };
      }
    };
  }

  function extent(lists) {
    var all = [].concat.apply([], lists).filter(function (v) { return v !== null && v !== undefined; });
    return all.length ? [Math.min.apply(null, all), Math.max.apply(null, all)] : [0, 1];
  }

  function niceCeil(x) {
    if (x <= 0) return 0;
    var step = Math.pow(10, Math.floor(Math.log10(x)));
    return Number((Math.ceil(x / step) * step).toPrecision(12));
  }

  function padded(side) {
    // An axis bound 8% beyond the data, on a round step, so that no point sits on the frame.
    return function (v) {
      var span = (v.max - v.min) || Math.abs(v.max) || 1, pad = span * 0.08;
      var step = Math.pow(10, Math.floor(Math.log10(span))) / 2;
      var bound = side < 0 ? Math.floor((v.min - pad) / step) * step : Math.ceil((v.max + pad) / step) * step;
      return Number(bound.toPrecision(12));
    };
  }

  function yName(name) {
    // The value axis' name above the axis, left-aligned: never cut off, however wide the tick labels.
    return { name: name, nameLocation: "end", nameGap: 14, nameTextStyle: { fontSize: FONT, color: "#333", align: "left" },
             axisLabel: { fontSize: 12, color: "#333", formatter: fmt } };
  }

  var builders = {
    bars: function (d, el) {
      var labels = d.labels.map(function (l, i) { return d.simulated[i] ? l + " (simulated)" : l; });
      el.style.height = Math.max(300, 44 * labels.length + 90) + "px";  // every bar gets room for its label
      var series = [{
        type: "bar", name: d.axis, barMaxWidth: 28,
        data: d.values.map(function (v, i) {
          return { value: v, itemStyle: { color: d.simulated[i] ? LIGHT : BLUE },
                   label: { color: d.simulated[i] ? "#14213d" : "#fff" } };
        }),
        label: { show: true, position: "insideLeft", fontSize: 12,
                 formatter: function (p) { return p.value === null ? "" : fmt(p.value); } }
      }];
      if (d.low.some(function (v) { return v !== null; })) series.push(whiskers(d.low, d.high, false));
      var range = extent([d.values, d.low, d.high]);
      return {
        animation: false,
        textStyle: { fontSize: FONT },
        grid: { left: 16, right: 32, top: 16, bottom: 48, containLabel: true },
        tooltip: { trigger: "axis", axisPointer: { type: "shadow" }, formatter: function (items) {
          var i = items[0].dataIndex;
          var text = labels[i] + "<br>" + d.axis + ": " + fmt(d.values[i]);
          if (d.low[i] !== null && d.high[i] !== null) text += "<br>95% interval: " + fmt(d.low[i]) + "–" + fmt(d.high[i]);
          return text;
        } },
        xAxis: axisStyle(d.axis, { type: "value", min: d.min !== undefined ? d.min : Math.min(0, range[0]),
                                   max: d.max !== undefined ? d.max : niceCeil(range[1]) }),
        yAxis: { type: "category", data: labels, inverse: true,
                 axisLabel: { fontSize: 12, color: "#333", width: 260, overflow: "truncate" } },
        series: series
      };
    },
    line: function (d) {
      var series = [];
      d.series.forEach(function (s) {
        var simulated = s.simulated.some(Boolean);
        series.push({ type: "line", name: simulated ? s.name + " (includes simulated)" : s.name, data: s.values,
                      connectNulls: false, symbolSize: 9, showSymbol: true, itemStyle: { color: BLUE },
                      lineStyle: { width: 2.5 } });
        if (s.low.some(function (v) { return v !== null; })) series.push(whiskers(s.low, s.high, true));
      });
      var range = extent(d.series.map(function (s) { return s.values.concat(s.low, s.high); }));
      var pad = Math.max((range[1] - range[0]) * 0.1, 0.5);
      return {
        animation: false,
        textStyle: { fontSize: FONT },
        legend: { top: 0, right: 0, textStyle: { fontSize: FONT }, data: [series[0].name] },
        grid: { left: 24, right: 24, top: 56, bottom: 56, containLabel: true },
        tooltip: { trigger: "axis", formatter: function (items) {
          var i = items[0].dataIndex, s = d.series[0];
          var text = d.x[i] + "<br>" + d.axis + ": " + fmt(s.values[i]);
          if (s.low[i] !== null && s.high[i] !== null) text += "<br>95% interval: " + fmt(s.low[i]) + "–" + fmt(s.high[i]);
          return text;
        } },
        xAxis: axisStyle(d.x_axis, { type: "category", data: d.x, boundaryGap: true }),
        yAxis: Object.assign(yName(d.axis), { type: "value", min: Math.floor(range[0] - pad), max: Math.ceil(range[1] + pad) }),
        series: series
      };
    },
    scatter: function (d) {
      var point = function (p) {
        return { value: [p.x, p.y], name: p.label + (p.simulated ? " (simulated)" : ""),
                 itemStyle: { opacity: p.simulated ? 0.75 : 1 } };
      };
      return {
        animation: false,
        textStyle: { fontSize: FONT },
        legend: { top: 0, right: 0, textStyle: { fontSize: FONT } },
        grid: { left: 24, right: 32, top: 56, bottom: 56, containLabel: true },
        tooltip: { trigger: "item", formatter: function (p) {
          return p.name + "<br>" + d.x_axis + ": " + fmt(p.value[0]) + "<br>" + d.axis + ": " + fmt(p.value[1]);
        } },
        xAxis: axisStyle(d.x_axis, { type: "value", min: padded(-1), max: padded(1) }),
        yAxis: Object.assign(yName(d.axis), { type: "value", min: padded(-1), max: padded(1) }),
        series: [
          { type: "scatter", name: "On the Pareto front", symbolSize: 14, itemStyle: { color: ORANGE },
            data: d.points.filter(function (p) { return p.front; }).map(point),
            label: { show: true, position: "right", fontSize: 12, formatter: "{b}" } },
          { type: "scatter", name: "Not on the front", symbolSize: 11, itemStyle: { color: BLUE },
            data: d.points.filter(function (p) { return !p.front; }).map(point),
            label: { show: d.points.length <= 12, position: "right", fontSize: 12, color: "#555", formatter: "{b}" } }
        ]
      };
    }
  };

  function render(root) {
    if (!window.echarts) return;
    root.querySelectorAll("[data-analytics-chart]").forEach(function (el) {
      var source = document.getElementById(el.dataset.source);
      if (!source) return;
      var data = JSON.parse(source.textContent);
      var build = builders[data.kind];
      if (!build) return;
      var option = build(data, el);
      var chart = echarts.getInstanceByDom(el) || echarts.init(el, null, { renderer: "svg" });
      chart.resize();
      chart.setOption(option, true);
    });
  }

  document.addEventListener("DOMContentLoaded", function () { render(document); });
  window.addEventListener("resize", function () {
    document.querySelectorAll("[data-analytics-chart]").forEach(function (el) {
      var chart = window.echarts && echarts.getInstanceByDom(el);
      if (chart) chart.resize();
    });
  });
})();
