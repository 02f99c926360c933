// The live page of a parameter sweep. A websocket sends the state and every result as it is
// stored (read from the database); the page redraws the progress tiles, keeps the latest
// responses (as text, never HTML) and adds each result to the heatmap cell of its parameters.
// The heatmap starts from the server's aggregate (`through_id` = the last result it holds) and is
// fetched again when the axes, the figure or the target change, or after a reconnect.
(function () {
  var script = document.currentScript;
  var num = window.LLMBenchFormat.num, param = window.LLMBenchFormat.param;
  var values = JSON.parse(document.getElementById("batch-values").textContent);
  var chartEl = document.getElementById("heatmap");
  var chart = window.echarts ? echarts.init(chartEl, null, { renderer: "svg" }) : null;
  var finished = ["completed", "failed", "cancelled", "deleted"];
  var heat = null, cells = {}, through = 0, loading = false, buffered = [], latest = [], drawQueued = false;

  function $(id) { return document.getElementById(id); }

  function text(id, value) { var el = $(id); if (el) el.textContent = value; }

  function params(p) {
    return Object.keys(p || {}).map(function (k) { return k + " " + param(p[k]); }).join(", ") || "–";
  }
  function duration(s) {
    if (s === null || s === undefined) return "–";
    if (s < 90) return Math.round(s) + " s";
    if (s < 5400) return Math.round(s / 60) + " minutes";
    return (s / 3600).toFixed(1) + " hours";
  }

  function setHeatmap(h) {
    heat = h; cells = {}; through = h.through_id;
    h.cells.forEach(function (c) { cells[c[0] + "," + c[1]] = [c[2] * c[3], c[3]]; });
  }

  function add(rows) {
    var target = $("heatmap-target") ? $("heatmap-target").value : "";
    rows.forEach(function (r) {
      if (r.id <= through) return;
      through = r.id;
      if (!r.ok || (target && String(r.t) !== target)) return;
      var v = r.m[heat.metric];
      if (v === null || v === undefined) return;
      var xi = values[heat.x].indexOf(r.p[heat.x]);
      var yi = heat.y ? values[heat.y].indexOf(r.p[heat.y]) : 0;
      if (xi < 0 || yi < 0) return;
      var cell = cells[xi + "," + yi] || (cells[xi + "," + yi] = [0, 0]);
      cell[0] += v; cell[1] += 1;
    });
  }

  function draw() {
    drawQueued = false;
    var data = [], results = 0, low = Infinity, high = -Infinity;
    Object.keys(cells).forEach(function (key) {
      var c = cells[key], ij = key.split(","), mean = Number((c[0] / c[1]).toFixed(1));
      results += c[1];
      low = Math.min(low, mean); high = Math.max(high, mean);
      data.push([Number(ij[0]), Number(ij[1]), mean, c[1]]);
    });
    // Colours span the values so far (the legend says which), so small differences still show.
    if (!data.length) { low = 0; high = 100; } else if (low === high) { low -= 1; high += 1; }
    chartEl.dataset.cells = data.length;
    chartEl.dataset.results = results;
    if (!chart) return;
    chart.setOption({
      tooltip: { formatter: function (p) {
        return heat.x + " " + param(values[heat.x][p.value[0]]) + (heat.y ? ", " + heat.y + " " + param(values[heat.y][p.value[1]]) : "") +
          ": " + num(p.value[2], 1) + " points (n = " + num(p.value[3]) + ")";
      } },
      grid: { left: 60, right: 20, top: 10, bottom: 70 },
      xAxis: { type: "category", name: heat.x, nameLocation: "middle", nameGap: 28, data: values[heat.x].map(param) },
      yAxis: { type: "category", name: heat.y || "", data: heat.y ? values[heat.y].map(param) : [""] },
      visualMap: { dimension: 2, min: Math.floor(low), max: Math.ceil(high), calculable: true, orient: "horizontal",
                   left: "center", bottom: 0, itemHeight: 120,
                   inRange: { color: ["#c23b3b", "#f2c14e", "#2f9e6e"] } },
      series: [{ type: "heatmap", data: data, label: { show: data.length <= 150, fontSize: 10 } }]
    }, true);
  }
  function redraw() { if (!drawQueued) { drawQueued = true; requestAnimationFrame(draw); } }

  var generation = 0;
  function fetchHeatmap() {
    // Only the newest request counts: an older answer that arrives late (two quick changes)
    // must not draw over the map that was asked for last.
    var mine = ++generation;
    loading = true;
    var query = new URLSearchParams({ x: $("heatmap-x").value, y: $("heatmap-y").value, metric: $("heatmap-metric").value });
    if ($("heatmap-target") && $("heatmap-target").value) query.set("target", $("heatmap-target").value);
    fetch(script.dataset.heatmapUrl + "?" + query.toString(), { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
      .then(function (h) { if (mine === generation) { setHeatmap(h); add(buffered); } })
      .catch(function () { /* keep the current map; the next change retries */ })
      .then(function () {
        if (mine !== generation) return;
        loading = false; buffered = []; redraw();
      });
  }

  function renderLatest(rows) {
    rows.forEach(function (r) { latest.unshift(r); });
    latest = latest.slice(0, 10);
    var list = $("latest");
    list.replaceChildren.apply(list, latest.map(function (r) {
      var li = document.createElement("li"), meta = document.createElement("span");
      meta.className = "muted"; meta.textContent = params(r.p) + " ";
      li.appendChild(meta);
      if (r.ok) { li.appendChild(document.createTextNode(r.text || "")); }
      else { var e = document.createElement("span"); e.className = "worse"; e.textContent = "error " + r.error; li.appendChild(e); }
      return li;
    }));
  }

  function renderState(s) {
    text("batch-status", s.status_label || s.status);
    document.body.dataset.batchStatus = s.status;
    if (s.status === "deleted") return;
    $("batch-status").className = "badge status-" + s.status;
    $("batch-progress").value = s.progress;
    text("progress-text", num(s.completed_results) + " of " + num(s.total_results) + " results (" + num(s.progress, 1) + "%)");
    text("live-combinations", num(s.completed_combinations));
    text("live-failed", num(s.failed_results));
    text("live-eta", s.status === "running" ? duration(s.eta_s) : "–");
    text("live-current", s.status === "running" ? params(s.current_parameters) : "–");
    var preview = s.results_preview || {};
    text("live-best", num(preview.best_quality_score, 1));
    text("live-best-params", params(preview.optimal_parameters));
    text("live-average", num(preview.average_quality_score, 1));
    var error = $("batch-error"); error.textContent = s.error || ""; error.hidden = !s.error;
    $("batch-stalled").hidden = !s.stalled;
    // Which buttons show is the server's `actions`: never Cancel beside a finished status.
    var actions = s.actions || {};
    var start = $("start-form"), cancel = $("cancel-form"), del = $("delete-form");
    if (start) start.hidden = !(actions.start || actions.resume);
    text("start-button", actions.resume ? "Resume" : "Start");
    if (cancel) cancel.hidden = !actions.cancel;
    if (del) del.hidden = !actions.delete;
    document.body.dataset.batchStatus = s.status;
  }

  function onMessage(message) {
    renderState(message.state);
    if (message.type === "state") {
      latest = []; renderLatest(message.results); fetchHeatmap();
      return;
    }
    renderLatest(message.results);
    if (loading) { buffered = buffered.concat(message.results); return; }
    add(message.results);
    redraw();
  }

  ["heatmap-x", "heatmap-y", "heatmap-metric", "heatmap-target"].forEach(function (id) {
    if ($(id)) $(id).addEventListener("change", fetchHeatmap);
  });
  window.addEventListener("resize", function () { if (chart) chart.resize(); });

  var delay = 500;
  function connect() {
    var socket = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + script.dataset.wsPath);
    socket.onmessage = function (event) { delay = 500; onMessage(JSON.parse(event.data)); };
    socket.onclose = function (event) {
      if (event.code === 4403) return;
      if (finished.indexOf(document.body.dataset.batchStatus) === -1) setTimeout(connect, delay = Math.min(delay * 2, 8000));
    };
  }
  setHeatmap(JSON.parse(document.getElementById("batch-heatmap").textContent));
  renderState(JSON.parse(document.getElementById("batch-state").textContent));
  draw();
  connect();
})();
