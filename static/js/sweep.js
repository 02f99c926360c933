// The live page of a load sweep: a websocket pushes the state read from the database; the page
// redraws tiles, the steps table and a chart, and reconnects (getting the full state) if cut.
(function () {
  var script = document.currentScript;
  var path = script.dataset.wsPath;
  var chartEl = document.getElementById("live-chart");
  var chart = window.echarts ? echarts.init(chartEl, null, { renderer: "svg" }) : null;
  var points = { ttft: [], tps: [] };
  var finished = ["completed", "failed", "cancelled"];
  var xName = "s", stepOffsets = {}, lastStep = null, lastElapsed = 0;

  function elapsedBefore(state) {
    // Seconds of the steps before the current one, so live points of a new step continue the line.
    if (state.current_step !== lastStep) {
      stepOffsets[state.current_step] = (stepOffsets[lastStep] || 0) + lastElapsed;
      lastStep = state.current_step;
    }
    lastElapsed = (state.live || {}).elapsed_s || 0;
    return stepOffsets[state.current_step] || 0;
  }

  function fmt(v, d) { return v === null || v === undefined ? "–" : Number(v).toFixed(d); }
  function text(id, value) { var el = document.getElementById(id); if (el) el.textContent = value; }

  function drawChart() {
    if (!chart) return;
    chart.setOption({
      grid: { left: 50, right: 70, top: 40, bottom: 30 },
      legend: { top: 0, data: ["TTFT p50 ms", "output tok/s"] },
      tooltip: { trigger: "axis" },
      xAxis: { type: "value", name: xName },
      yAxis: [{ type: "value", name: "ms" }, { type: "value", name: "tok/s" }],
      series: [
        { name: "TTFT p50 ms", type: "line", showSymbol: xName !== "s", data: points.ttft },
        { name: "output tok/s", type: "line", showSymbol: xName !== "s", yAxisIndex: 1, data: points.tps }
      ]
    }, true);
  }

  function row(step) {
    var tr = document.createElement("tr");
    var achieved = [];
    if (step.achieved_concurrency !== null) achieved.push("c " + fmt(step.achieved_concurrency, 1));
    if (step.achieved_rate_rps !== null) achieved.push(fmt(step.achieved_rate_rps, 1) + " req/s");
    var client = step.client_kept_up === null ? "–" : (step.client_kept_up ? "kept up" : "fell behind");
    [step.index + 1, fmt(step.level, 0), step.status, fmt(step.ttft_p50_ms, 1), fmt(step.output_tps, 1),
     achieved.join(" · "), fmt(step.dispatch_delay_p99_ms, 1), client].forEach(function (value) {
      var td = document.createElement("td"); td.textContent = value; tr.appendChild(td);
    });
    var td = document.createElement("td");
    if (step.run_id) { var a = document.createElement("a"); a.href = "/performance/runs/" + step.run_id + "/"; a.textContent = "#" + step.run_id; td.appendChild(a); }
    tr.appendChild(td);
    return tr;
  }

  function render(state) {
    text("sweep-status", state.status);
    var status = document.getElementById("sweep-status");
    if (status) status.className = "badge status-" + state.status;
    text("live-step", state.current_step === null ? "–" : state.current_step + 1);
    var live = state.live || {};
    text("live-done", live.requests_done === undefined ? 0 : live.requests_done);
    text("live-failed", live.requests_failed === undefined ? 0 : live.requests_failed);
    text("live-ttft", fmt(live.ttft_p50_ms, 1) + " / " + fmt(live.ttft_p95_ms, 1));
    text("live-itl", fmt(live.itl_p50_ms, 2));
    text("live-tps", fmt(live.output_tokens_per_s, 1));
    var error = document.getElementById("sweep-error");
    if (error) { error.textContent = state.error || ""; error.hidden = !state.error; }
    var stalled = document.getElementById("sweep-stalled");
    if (stalled) stalled.hidden = !state.stalled;
    var body = document.getElementById("steps-body");
    if (body) { body.replaceChildren.apply(body, state.steps.map(row)); }
    var start = document.getElementById("start-form"), cancel = document.getElementById("cancel-form");
    if (start) start.hidden = !(state.status === "pending" || state.status === "failed");
    if (cancel) cancel.hidden = !(state.status === "pending" || state.status === "running");
    if (state.status === "running" && live.elapsed_s !== undefined && live.ttft_p50_ms !== undefined && live.ttft_p50_ms !== null) {
      // While running: the live figures over time (steps laid end to end).
      xName = "s";
      points.ttft.push([elapsedBefore(state) + live.elapsed_s, live.ttft_p50_ms]);
      points.tps.push([elapsedBefore(state) + live.elapsed_s, live.output_tokens_per_s]);
      drawChart();
    } else if (state.status !== "running") {
      // Otherwise: each finished step's figures against its level.
      var done = state.steps.filter(function (s) { return s.run_id; });
      xName = script.dataset.mode === "open" ? "req/s" : "concurrency";
      points.ttft = done.map(function (s) { return [s.level, s.ttft_p50_ms]; });
      points.tps = done.map(function (s) { return [s.level, s.output_tps]; });
      drawChart();
    }
    document.body.dataset.sweepStatus = state.status;
  }

  var delay = 500;
  function connect() {
    var socket = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + path);
    socket.onmessage = function (event) { delay = 500; render(JSON.parse(event.data)); };
    socket.onclose = function (event) {
      if (event.code === 4403) return;
      if (finished.indexOf(document.body.dataset.sweepStatus) === -1) setTimeout(connect, delay = Math.min(delay * 2, 8000));
    };
  }
  var initial = document.getElementById("sweep-state");
  if (initial) render(JSON.parse(initial.textContent));
  drawChart();
  connect();
})();
