"""`make bench`, the web tier (issue #12): four pages under 32 concurrent connections, on PostgreSQL.

The product's own path: a fresh database, `migrate`, `load_demo`, `collectstatic` into a temporary
STATIC_ROOT, then `manage.py serve --no-worker` with DEBUG=false and its documented defaults (one
web process per CPU, a pool of DB_POOL_MAX_SIZE connections each). `wrk` (Debian package `wrk`:
`sudo apt-get install wrk`) drives each page; the API with `Authorization: Token <key>` from
`manage.py create_token`, the dashboard with the session cookie of a browser-like login (CSRF).

For each of /api/v1/scores/leaderboard, /api/v1/performance/grid, /api/v1/performance/runs and "/",
32 connections for BENCH_WEB_SECONDS (20) s, targets:

* no errors: non-2xx responses (3xx included: a lost session would redirect) and socket errors;
* p95 latency under 200 ms;
* throughput at least 80% of the CPU-bound limit measured in the same run: cores ÷ CPU time per
  request, the CPU time (utime + stime from /proc) of the server's processes and of its
  PostgreSQL backends over a one-connection run, divided by the requests it completed.

Each figure is the median of BENCH_WEB_ROUNDS (3) rounds; errors are added up over all rounds.
The peak number of the server's PostgreSQL connections (pg_stat_activity, sampled every 0.1 s)
must stay within web processes × DB_POOL_MAX_SIZE. BENCH_WEB_BEFORE=1 adds a reference line per
page for the old setup (one uvicorn process, no pool, DB_CONN_MAX_AGE=60): not a target, and not
on a shared PostgreSQL server, since that setup may take all of its connections for a while.

BENCH_PG_URL (default postgres://postgres@127.0.0.1:5432/llmbench_bench; this script uses that
server with the database name + "_web", dropped and created afresh) and BENCH_REDIS_URL (default
redis://127.0.0.1:6379/13, cache and channel layer only) name the services; BENCH_WEB_KEEP_DB=1
reuses the previous run's database (only when working on this script).
"""

import contextlib
import http.cookiejar
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psycopg
from common import ROOT, Report

PG_URL = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432/llmbench_bench") + "_web"
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
SECONDS = int(os.environ.get("BENCH_WEB_SECONDS", "20"))
ROUNDS = int(os.environ.get("BENCH_WEB_ROUNDS", "3"))
ONE_CONNECTION_S = 5
CONNECTIONS = 32
APP_NAME = "llmbench-bench-web"
PAGES = (
    ("leaderboard API", "/api/v1/scores/leaderboard", "token"),
    ("performance grid API", "/api/v1/performance/grid", "token"),
    ("performance runs API", "/api/v1/performance/runs", "token"),
    ("dashboard page", "/", "session"),
)
WRK_SCRIPT = """
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) not_2xx = 0 end
function response(status, headers, body)
  if status < 200 or status > 299 then not_2xx = not_2xx + 1 end
end
function done(summary, latency, requests)
  local not_2xx_total = 0
  for _, thread in ipairs(threads) do not_2xx_total = not_2xx_total + thread:get("not_2xx") end
  local e = summary.errors
  io.write(string.format("RESULT requests=%d duration_us=%d p95_us=%d p50_us=%d not_2xx=%d socket_errors=%d\\n",
    summary.requests, summary.duration, latency:percentile(95), latency:percentile(50), not_2xx_total,
    e.connect + e.read + e.write + e.timeout))
end
"""
CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


@dataclass
class WrkResult:
    requests: int
    rate_per_s: float
    p95_ms: float
    p50_ms: float
    errors: int


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpus() -> int:
    return len(os.sched_getaffinity(0))


def fresh_database() -> None:
    base, _, name = PG_URL.rpartition("/")
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def server_env(static_root: str, **extra: str) -> dict:
    """DEBUG=false with what it requires (README, Deployment), plain HTTP on localhost."""
    from cryptography.fernet import Fernet

    return {
        **os.environ, "DJANGO_SETTINGS_MODULE": "llmbench.settings", "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(50), "LLMBENCH_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "ALLOWED_HOSTS": "127.0.0.1,localhost", "SECURE_SSL_REDIRECT": "false", "SESSION_COOKIE_SECURE": "false",
        "CSRF_COOKIE_SECURE": "false", "DATABASE_URL": PG_URL, "REDIS_URL": REDIS_URL,
        "CACHE_KEY_PREFIX": "llmbench-bench-web", "STATIC_ROOT": static_root, "DB_APPLICATION_NAME": APP_NAME,
        "LOG_LEVEL": "WARNING", **extra,
    }  # fmt: skip


def manage(env: dict, *args: str) -> str:
    done = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"manage.py {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


class Server:
    """`manage.py serve --no-worker` as a user starts it; stopped with SIGTERM as Ctrl-C would."""

    def __init__(self, env: dict, *args: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # The server's log (errors with their tracebacks) goes to a file; the bench prints its tail.
        self.log_path = Path(env["STATIC_ROOT"]) / f"serve-{self.port}.log"
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "manage.py", "serve", "--no-worker", "--port", str(self.port), *args], cwd=ROOT,
                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        try:
            self._wait_up(int(args[args.index("--workers") + 1]) if "--workers" in args else web_concurrency(env))
        except BaseException:
            self.stop()
            raise

    def _wait_up(self, processes: int) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"manage.py serve exited with {self.proc.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(OSError):
                urllib.request.urlopen(f"{self.url}/health", timeout=1).read()
                break
            time.sleep(0.2)
        else:
            raise SystemExit("manage.py serve did not answer /health within 60 s")
        # uvicorn starts its processes one after the other, and each loads Django for a few seconds.
        # wrk's connections stay with the process that accepted them: wait until every process has
        # loaded (its CPU time stops growing), or the first one would take all 32 connections.
        previous: dict[int, float] = {}
        while time.monotonic() < deadline:
            current = {pid: cpu_seconds([pid]) for pid in self.web_processes()}
            settled = current.keys() == previous.keys() and all(current[p] - previous[p] < 0.05 for p in current)
            if len(current) >= processes and settled:
                return
            previous = current
            time.sleep(0.5)
        raise SystemExit(f"manage.py serve did not start {processes} web processes within 60 s")

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def errors_logged(self) -> int:
        return self.log_path.read_text(errors="replace").count("Internal Server Error")

    def web_processes(self) -> list[int]:
        """The uvicorn processes that serve requests: the leaves of the serve process tree, except
        the resource tracker that multiprocessing starts beside uvicorn's spawned processes."""
        tree = self.tree()
        parents = set()
        for pid in tree:
            with contextlib.suppress(OSError):
                parents.add(_stat_fields(Path(f"/proc/{pid}/stat").read_text())[1])
        leaves = [pid for pid in tree if pid not in parents and pid != self.proc.pid]
        return [pid for pid in leaves if b"resource_tracker" not in _cmdline(pid)]

    def tree(self) -> list[int]:
        """Every process of the server (serve, uvicorn's supervisor and its web processes)."""
        children: dict[int, list[int]] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError):
                pid, ppid = _stat_fields(stat.read_text())[0:2]
                children.setdefault(ppid, []).append(pid)
        found, todo = [], [self.proc.pid]
        while todo:
            pid = todo.pop()
            found.append(pid)
            todo += children.get(pid, [])
        return found

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=20)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)


def _stat_fields(text: str) -> tuple[int, int, int]:
    """pid, ppid and utime + stime (clock ticks) from /proc/<pid>/stat (the name may hold spaces)."""
    pid = int(text[: text.index(" ")])
    rest = text[text.rindex(")") + 2 :].split()
    return pid, int(rest[1]), int(rest[11]) + int(rest[12])


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def web_concurrency(env: dict) -> int:
    """The server's own settings, read as it reads them: WEB_CONCURRENCY and DB_POOL_MAX_SIZE."""
    return int(django_setting(env, "WEB_CONCURRENCY"))


def django_setting(env: dict, name: str) -> str:
    return manage(env, "shell", "-v", "0", "-c", f"from django.conf import settings; print(settings.{name})").strip()


@dataclass
class Measured:
    wrk: WrkResult
    server_cpu_ms: float  # per request
    postgres_cpu_ms: float  # per request
    cpus_used: float  # server + PostgreSQL backends, CPU seconds per second
    cpus_idle: float  # the whole machine's idle CPUs over the run: > 0 means the server left CPU unused


def measure(server: "Server", sampler: "ConnectionSampler", url: str, header: str, connections: int, seconds: int,
            script: Path) -> Measured:  # fmt: skip
    """A wrk run with the CPU time of the server's processes and PostgreSQL backends over it."""
    tree, backends = server.tree(), sampler.backend_pids()
    started, before, idle_before = time.monotonic(), (cpu_seconds(tree), cpu_seconds(backends)), idle_seconds()
    result = wrk(url, header, connections=connections, seconds=seconds, script=script)
    # Backends opened during the run count whole: they had used no CPU before it.
    backends = sorted(set(backends) | set(sampler.backend_pids()))
    after, elapsed_s = (cpu_seconds(tree), cpu_seconds(backends)), time.monotonic() - started
    return Measured(
        wrk=result, server_cpu_ms=(after[0] - before[0]) * 1000 / result.requests,
        postgres_cpu_ms=(after[1] - before[1]) * 1000 / result.requests,
        cpus_used=(after[0] - before[0] + after[1] - before[1]) / elapsed_s,
        cpus_idle=(idle_seconds() - idle_before) / elapsed_s,
    )  # fmt: skip


def idle_seconds() -> float:
    """The machine's idle + iowait time over all CPUs since boot (/proc/stat)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()
    return (int(fields[4]) + int(fields[5])) / CLOCK_TICKS_PER_S


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            total += _stat_fields(Path(f"/proc/{pid}/stat").read_text())[2]
    return total / CLOCK_TICKS_PER_S


class ConnectionSampler:
    """The server's PostgreSQL connections (by application_name), sampled every 0.1 s in a thread."""

    def __init__(self):
        self.conn = psycopg.connect(PG_URL, autocommit=True)
        self.peak = 0
        self.running = False

    def backend_pids(self) -> list[int]:
        # Parallel query workers carry their leader's application_name too: their CPU counts.
        rows = self.conn.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s", [APP_NAME])
        return [pid for (pid,) in rows.fetchall()]

    def __enter__(self):
        self.running = True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self):
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            while self.running:
                # Connections only: a parallel query's workers carry their leader's application_name.
                (count,) = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s "
                    "AND backend_type = 'client backend'",
                    [APP_NAME],
                ).fetchone()
                self.peak = max(self.peak, count)
                time.sleep(0.1)

    def __exit__(self, *exc):
        self.running = False
        self.thread.join()


def login_cookie(url: str) -> str:
    """Sign in through /login/ as a browser does (GET the form, POST it with its CSRF token)."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    form = opener.open(f"{url}/login/").read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form).group(1)
    data = urllib.parse.urlencode({"username": "demo", "password": "demo-password", "csrfmiddlewaretoken": token})
    request = urllib.request.Request(f"{url}/login/", data=data.encode(), headers={"Referer": f"{url}/login/"})
    opener.open(request).read()
    cookies = {cookie.name: cookie.value for cookie in jar}
    if "sessionid" not in cookies:
        raise SystemExit("logging in as demo / demo-password did not give a session cookie")
    return "; ".join(f"{name}={value}" for name, value in cookies.items())


def wrk(url: str, header: str, *, connections: int, seconds: int, script: str) -> WrkResult:
    threads = min(2, connections)
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-H", header, "-s", script,
         url], capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return wrk_result(out)


def wrk_result(out: str) -> WrkResult:
    """The figures WRK_SCRIPT's done() wrote in wrk's output."""
    fields = dict(item.split("=") for item in re.search(r"RESULT (.*)", out).group(1).split())
    values = {key: int(value) for key, value in fields.items()}
    return WrkResult(
        requests=values["requests"], rate_per_s=values["requests"] / (values["duration_us"] / 1e6),
        p95_ms=values["p95_us"] / 1000, p50_ms=values["p50_us"] / 1000,
        errors=values["not_2xx"] + values["socket_errors"],
    )  # fmt: skip


def check_page(url: str, header: str) -> None:
    """One request answered 200 (not a redirect to the login page), as a user would see it."""
    name, _, value = header.partition(": ")
    opener = urllib.request.build_opener(_NoRedirect)
    response = opener.open(urllib.request.Request(url, headers={name: value}))
    if response.status != 200:
        raise SystemExit(f"{url} answered {response.status}, not 200")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def main() -> int:
    if not shutil.which("wrk"):
        print("bench/web.py needs wrk: sudo apt-get install wrk (Debian/Ubuntu) or brew install wrk")
        return 1
    started = time.monotonic()
    static_root = tempfile.mkdtemp(prefix="llmbench-bench-static-")
    script = Path(static_root) / "p95.lua"
    script.write_text(WRK_SCRIPT)
    env = server_env(static_root)
    print(f"== web tier on PostgreSQL, DEBUG=false, {cpus()} CPUs, {CONNECTIONS} connections × {SECONDS} s per page")
    if not os.environ.get("BENCH_WEB_KEEP_DB"):
        fresh_database()
        manage(env, "migrate", "--noinput")
        manage(env, "load_demo")
    manage(env, "collectstatic", "--noinput")
    token = manage(env, "create_token", "demo", "--team", "demo").strip().splitlines()[-1]
    print(f"   database, demo data and static files ready in {time.monotonic() - started:.0f} s", flush=True)

    processes = web_concurrency(env)
    server = Server(env)
    try:
        headers = {"token": f"Authorization: Token {token}", "session": f"Cookie: {login_cookie(server.url)}"}
        for _, path, auth in PAGES:
            check_page(server.url + path, headers[auth])
        sampler = ConnectionSampler()
        runs: dict[str, list[Measured]] = {path: [] for _, path, _ in PAGES}
        one_connection: dict[str, list[Measured]] = {path: [] for _, path, _ in PAGES}
        with sampler:
            for _ in range(ROUNDS):
                for _, path, auth in PAGES:
                    url, header = server.url + path, headers[auth]
                    one_connection[path].append(measure(server, sampler, url, header, 1, ONE_CONNECTION_S, script))
                    runs[path].append(measure(server, sampler, url, header, CONNECTIONS, SECONDS, script))
        if logged := server.errors_logged():
            print(f"   the server logged {logged} internal errors; the last lines of its log:\n{server.log_tail()}")
        before_lines = before_reference(env, headers) if os.environ.get("BENCH_WEB_BEFORE") else {}
    finally:
        server.stop()

    report = Report()
    for name, path, _ in PAGES:
        server_ms = statistics.median(m.server_cpu_ms for m in one_connection[path])
        postgres_ms = statistics.median(m.postgres_cpu_ms for m in one_connection[path])
        limit = statistics.median(cpus() * 1000 / (m.server_cpu_ms + m.postgres_cpu_ms) for m in one_connection[path])
        rate = statistics.median(m.wrk.rate_per_s for m in runs[path])
        busy = statistics.median(m.cpus_used for m in runs[path])
        idle = statistics.median(m.cpus_idle for m in runs[path])
        print(f"   {name} {path}: CPU per request {server_ms:.1f} ms server + {postgres_ms:.1f} ms PostgreSQL "
              f"(one connection) → limit {limit:,.0f} req/s on {cpus()} CPUs; at {CONNECTIONS} connections "
              f"{', '.join(f'{m.wrk.rate_per_s:,.0f}' for m in runs[path])} req/s, "
              f"p50 {statistics.median(m.wrk.p50_ms for m in runs[path]):.0f} ms, CPU per request "
              f"{statistics.median(m.server_cpu_ms + m.postgres_cpu_ms for m in runs[path]):.1f} ms, "
              f"server and PostgreSQL busy on {busy:.2f} of {cpus()} CPUs, {idle:.2f} idle")  # fmt: skip
        zero_line(report, f"{name}: errors at {CONNECTIONS} connections", sum(m.wrk.errors for m in runs[path]))
        report.line(f"{name}: p95 at {CONNECTIONS} connections", statistics.median(m.wrk.p95_ms for m in runs[path]),
                    200, "ms")  # fmt: skip
        report.line(f"{name}: throughput (target 80% of CPU limit)", rate, 0.8 * limit, "req/s",
                    higher_is_better=True)  # fmt: skip
        if path in before_lines:
            old = before_lines[path]
            print(f"   before (1 uvicorn process, no pool, DB_CONN_MAX_AGE=60; reference, not a target): "
                  f"{old.rate_per_s:,.0f} req/s, p95 {old.p95_ms:.0f} ms, {old.errors} errors")  # fmt: skip
    pool_max = int(django_setting(env, "DB_POOL_MAX_SIZE"))
    report.line(f"PostgreSQL connections of the server, peak ({processes} processes × pool {pool_max})",
                sampler.peak, processes * pool_max, "conns")  # fmt: skip
    print(f"   whole web bench: {time.monotonic() - started:.0f} s")
    shutil.rmtree(static_root, ignore_errors=True)
    return report.close()


def before_reference(env: dict, headers: dict) -> dict[str, WrkResult]:
    """One 32-connection run per page against the old setup, for comparison only. It opens a
    connection per request in flight: on a PostgreSQL server that others share, it may take all
    of max_connections for a while ("too many clients already" for everyone)."""
    old_env = {**env, "DB_POOL": "false", "DB_CONN_MAX_AGE": "60"}
    server = Server(old_env, "--workers", "1")
    try:
        headers = {**headers, "session": f"Cookie: {login_cookie(server.url)}"}
        script = str(Path(env["STATIC_ROOT"]) / "p95.lua")
        return {path: wrk(server.url + path, headers[auth], connections=CONNECTIONS, seconds=SECONDS, script=script)
                for _, path, auth in PAGES}  # fmt: skip
    finally:
        server.stop()


def zero_line(report: Report, name: str, count: int) -> None:
    """A `Report` line whose target is zero (a ratio would divide by it)."""
    report.count += 1
    if count:
        report.missed.append(name)
    print(f"{name:<58} {count:12,.1f} {'':<6} target {0:10,.1f} {'':<6} ratio {'-':>6}  {'MISSED' if count else 'ok'}")


if __name__ == "__main__":
    sys.exit(main())
