// The live page of a load sweep: a websocket pushes the state read from the database; the page
// redraws tiles, the steps table and a chart, and reconnects (getting the full state) if cut.
// Which buttons show comes from the state's `actions` (the server decides, so the page never shows
// a Cancel button beside a finished status); numbers go through num(), the page's formatter.
(function () {
  var script = document.currentScript;
  var num = window.LLMBenchFormat.num, param = window.LLMBenchFormat.param;
  var path = script.dataset.wsPath;
  var chartEl = document.getElementById("live-chart");
  var chart = window.echarts ? echarts.init(chartEl, null, { renderer: "svg" }) : null;
  var points = { ttft: [], tps: [] };
  var finished = ["completed", "failed", "cancelled"];
  var xName = "s", stepOffsets = {}, lastStep = null, lastElapsed = 0;
  var levelName = script.dataset.mode === "open" ? "req/s" : "concurrency";

  function elapsedBefore(state) {
    // Seconds of the steps before the current one, so live points of a new step continue the line.
    if (state.current_step !== lastStep) {
      stepOffsets[state.current_step] = (stepOffsets[lastStep] || 0) + lastElapsed;
      lastStep = state.current_step;
    }
    lastElapsed = (state.live || {}).elapsed_s || 0;
    return stepOffsets[state.current_step] || 0;
  }



  function text(id, value) { var el = document.getElementById(id); if (el) el.textContent = value; }

  function drawChart() {
    if (!chart) return;
    chart.setOption({
      grid: { left: 60, right: 70, top: 40, bottom: 40 },
      legend: { top: 0, data: ["TTFT p50 (ms)", "Output tokens/s"] },
      tooltip: { trigger: "axis" },
      xAxis: { type: "value", name: xName, nameLocation: "middle", nameGap: 26 },
      yAxis: [{ type: "value", name: "ms" }, { type: "value", name: "tokens/s" }],
      series: [
        { name: "TTFT p50 (ms)", type: "line", showSymbol: xName !== "s", data: points.ttft },
        { name: "Output tokens/s", type: "line", showSymbol: xName !== "s", yAxisIndex: 1, data: points.tps }
      ]
    }, true);
  }

  function cell(tr, value, className) {
    var td = document.createElement("td");
    td.textContent = value;
    if (className) td.className = className;
    tr.appendChild(td);
    return td;
  }

  function row(step) {
    var tr = document.createElement("tr");
    tr.dataset.status = step.status;
    var achieved = [];
    if (step.achieved_concurrency !== null) achieved.push("concurrency " + num(step.achieved_concurrency, 1));
    if (step.achieved_rate_rps !== null) achieved.push(num(step.achieved_rate_rps, 1) + " req/s");
    var client = step.client_kept_up === null ? "–" : (step.client_kept_up ? "kept up" : "fell behind");
    cell(tr, step.index + 1);
    cell(tr, param(step.level));
    cell(tr, step.status, "text");
    cell(tr, num(step.ttft_p50_ms, 1));
    cell(tr, num(step.output_tps, 1));
    var run = cell(tr, step.run_id ? "" : "–");
    if (step.run_id) { var a = document.createElement("a"); a.href = "/performance/runs/" + step.run_id + "/"; a.textContent = "#" + step.run_id; run.appendChild(a); }
    cell(tr, achieved.join(" · "), "secondary");
    cell(tr, num(step.dispatch_delay_p99_ms, 1), "secondary");
    cell(tr, client, "secondary text");
    return tr;
  }

  function render(state) {
    text("sweep-status", state.status_label || state.status);
    var status = document.getElementById("sweep-status");
    if (status) status.className = "badge status-" + state.status;
    text("live-step", num(state.steps_done));
    var live = state.live || {};
    text("live-caption", state.live_final ? "Final figures of step " + (state.live_step + 1) + ", the last step that ran."
      : state.status === "running" ? "Live figures of the running step so far." : "No step has run yet.");
    text("live-done", num(live.requests_done));
    text("live-failed", num(live.requests_failed));
    text("live-ttft", num(live.ttft_p50_ms, 1) + " / " + num(live.ttft_p95_ms, 1));
    text("live-itl", num(live.itl_p50_ms, 2));
    text("live-tps", num(live.output_tokens_per_s, 1));
    var error = document.getElementById("sweep-error");
    if (error) { error.textContent = state.error || ""; error.hidden = !state.error; }
    var stalled = document.getElementById("sweep-stalled");
    if (stalled) stalled.hidden = !state.stalled;
    var body = document.getElementById("steps-body");
    if (body) { body.replaceChildren.apply(body, state.steps.map(row)); }
    var actions = state.actions || {};
    var start = document.getElementById("start-form"), cancel = document.getElementById("cancel-form");
    if (start) start.hidden = !(actions.start || actions.resume);
    text("start-button", actions.resume ? "Resume" : "Start");
    if (cancel) cancel.hidden = !actions.cancel;
    if (state.status === "running" && !state.live_final && live.elapsed_s !== undefined && live.ttft_p50_ms !== undefined && live.ttft_p50_ms !== null) {
      // While running: the live figures over time (steps laid end to end).
      xName = "s";
      points.ttft.push([elapsedBefore(state) + live.elapsed_s, live.ttft_p50_ms]);
      points.tps.push([elapsedBefore(state) + live.elapsed_s, live.output_tokens_per_s]);
      drawChart();
    } else if (state.status !== "running") {
      // Otherwise: each finished step's figures against its level.
      var done = state.steps.filter(function (s) { return s.run_id; });
      xName = levelName;
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
  window.addEventListener("resize", function () { if (chart) chart.resize(); });
  var initial = document.getElementById("sweep-state");
  if (initial) render(JSON.parse(initial.textContent));
  drawChart();
  connect();
})();
