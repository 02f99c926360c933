// The dashboard's running-jobs tile. The server renders the first state; a websocket then sends
// the team's running jobs (read from the database every second) whenever they change, and the
// list is redrawn from that message (as text, never HTML). A job that finishes leaves the tile and
// goes to the top of its "Latest" list (parameter sweeps, load sweeps, experiments) with its final
// status. A dropped connection reconnects with a doubling delay up to 15 s; a refusal (4403: signed
// out, or no longer in the team) does not.
(function () {
  var script = document.currentScript;
  var list = document.getElementById("running-jobs");
  if (!list) return;

  function item(job) {
    var li = document.createElement("li");
    li.dataset.job = job.kind + "-" + job.id;
    li.dataset.status = job.status;
    li.dataset.completed = job.completed;
    li.dataset.total = job.total;
    var link = document.createElement("a");
    link.href = job.url;
    link.textContent = job.name;
    var kind = document.createElement("span");
    kind.className = "muted";
    kind.textContent = job.kind;
    var status = document.createElement("span");
    status.className = "badge status-" + job.status;
    status.textContent = job.status;
    var row = document.createElement("div");
    row.className = "progress-row";
    var bar = document.createElement("progress");
    bar.max = 100;
    bar.value = job.progress;
    bar.textContent = job.progress + "%";
    var label = document.createElement("span");
    label.className = "job-text";
    label.textContent = job.completed.toLocaleString("en-US") + " of " + job.total.toLocaleString("en-US") + " " + job.unit;
    row.append(bar, label);
    li.append(link, " ", kind, " ", status, row);
    return li;
  }

  function render(jobs) {
    if (!jobs.length) {
      var empty = document.createElement("li");
      empty.className = "empty";
      empty.textContent = "Nothing running.";
      list.replaceChildren(empty);
      return;
    }
    list.replaceChildren.apply(list, jobs.map(item));
  }

  // A finished job: its row in the "Latest" list of its kind gets the final status, or a new row on top.
  function finish(job) {
    var latest = document.querySelector('ul[data-latest="' + job.kind + '"]');
    if (!latest) return;
    var li = latest.querySelector('li[data-job="' + job.kind + "-" + job.id + '"]');
    if (!li) {
      li = document.createElement("li");
      li.dataset.job = job.kind + "-" + job.id;
      var link = document.createElement("a");
      link.href = job.url;
      link.textContent = job.name;
      var badge = document.createElement("span");
      li.append(link, " ", badge);
      var empty = latest.querySelector("li.empty");
      if (empty) empty.remove();
      latest.prepend(li);
      var limit = Number(script.dataset.latest || 5);
      while (latest.children.length > limit) latest.lastElementChild.remove();
    }
    var status = li.querySelector(".badge") || li.appendChild(document.createElement("span"));
    status.className = "badge status-" + job.status;
    status.textContent = job.status;
  }

  var delay = 500;
  function connect() {
    var socket = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + script.dataset.wsPath);
    socket.onopen = function () { list.dataset.live = "1"; };
    socket.onmessage = function (event) {
      delay = 500;
      var message = JSON.parse(event.data);
      if (message.type !== "jobs") return;
      render(message.jobs);
      (message.finished || []).forEach(finish);
    };
    socket.onclose = function (event) {
      list.dataset.live = "0";
      if (event.code === 4403) return;
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 15000);
    };
  }
  connect();
})();
