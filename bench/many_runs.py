"""`make bench`, many runs at once (issue 17): 120 runs of 3 teams queued at once through the fair queue.

The product's own path on PostgreSQL + Redis: the bench database migrated, `collectstatic` into a STATIC_ROOT
kept between runs (run again only when a static file changed), then `manage.py serve --workers 2` (2 web processes
and its task worker) with Q_WORKERS=4 and DEBUG=false, as the README (Production) describes; `manage.py mockllm` on
a local port (TTFT 20 ms, 16 tokens 2 ms apart). Each round deletes the bench teams' runs of the round before (so
rounds start alike) and creates 120 runs — team A 80, team B 30, team C 10, each team's a third experiments
(6 responses), a third parameter sweeps (6 combinations) and a third load sweeps (one closed-loop step of 8
requests) — and starts them all through the services (experiment_start, batch_start, sweep_start), A's burst
first. The runs go through apps/jobs (JOBS_MAX_RUNNING = the 4 workers, JOBS_TEAM_MAX_RUNNING 2). While they run,
BENCH_MANY_RUNS_CONNECTIONS (4) clients load the dashboard ("/", signed in) back to back, from a process of
their own (`wrk`, with bench/web.py's script); 5 s of the same before the first round give a reference p95 (no target).

Printed per round, and as targets (the median over BENCH_MANY_RUNS_ROUNDS (3) rounds; counts added up):

* runs completed: all 120;
* results lost or repeated: 0 — per experiment and parameter sweep, stored responses against the expected count,
  duplicates by (target, item, combination, repetition); per load step, one measured run of exactly its request
  count; and no job begun twice;
* wall time from the first start to the last run finished (reference; target BENCH_MANY_RUNS_WALL_S, 180 s);
* dashboard p95 during the burst < 300 ms, no errors (non-2xx, redirects to the login page included);
* the longest wait of any team's first job (first start of its jobs − its first queued): under 30 s, i.e. no team
  waits behind another's burst (team C's first job starts when the first of A's or B's ends).

BENCH_PG_URL (default postgres://postgres@127.0.0.1:5432/llmbench_bench; this script uses the database name +
"_many_runs", made when missing and migrated) or BENCH_MANY_RUNS_PG_URL (the whole URL), and BENCH_REDIS_URL
(default redis://127.0.0.1:6379/13; only keys of this bench's own prefix and queue name are deleted) name the
services. About 2½ minutes (3 rounds) when the database and static files are ready; the first run migrates and
collects static files (a few minutes more on a busy machine).
"""

import contextlib
import http.cookiejar
import os
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import web
from common import ROOT, Report, ensure_database

PG_URL = os.environ.get("BENCH_MANY_RUNS_PG_URL") or (
    os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432/llmbench_bench") + "_many_runs"
)
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
ROUNDS = int(os.environ.get("BENCH_MANY_RUNS_ROUNDS", "3"))
CONNECTIONS = int(os.environ.get("BENCH_MANY_RUNS_CONNECTIONS", "4"))
WALL_TARGET_S = float(os.environ.get("BENCH_MANY_RUNS_WALL_S", "180"))
ROUND_DEADLINE_S = 240
IDLE_S = 5
WEB_PROCESSES, WORKERS = 2, 4
TEAMS = {"bench-many-a": 80, "bench-many-b": 30, "bench-many-c": 10}
KINDS = ("experiment", "parameter sweep", "load sweep")
RESPONSES, STEP_REQUESTS, TOKENS = 6, 8, 16
PREFIX = "llmbench-bench-many"
USERNAME, PASSWORD = "bench-many", secrets.token_urlsafe(16)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def static_up_to_date(static_root: Path) -> bool:
    """collectstatic (and its compression: about a minute of CPU) only when a project static file changed since."""
    manifest = static_root / "staticfiles.json"
    if not manifest.exists():
        return False
    sources = [p for d in [ROOT / "static", *ROOT.glob("apps/*/static")] for p in d.rglob("*") if p.is_file()]
    return all(p.stat().st_mtime < manifest.stat().st_mtime for p in sources)


def forget_redis_keys() -> None:
    """Delete this bench's own keys (cache prefix and queue name) left by an earlier run: never the whole db."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(match=f"*{PREFIX}*", count=1000):
        client.delete(key)


def bench_env(static_root: str) -> dict:
    """DEBUG=false with what it requires (README, Deployment), plain HTTP on localhost; shared by this process
    (which starts the runs) and the server (which runs them), so both dispatch with the same caps."""
    from cryptography.fernet import Fernet

    return {
        **os.environ, "DJANGO_SETTINGS_MODULE": "llmbench.settings", "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(50), "LLMBENCH_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "ALLOWED_HOSTS": "127.0.0.1,localhost,testserver", "SECURE_SSL_REDIRECT": "false",
        "SESSION_COOKIE_SECURE": "false", "CSRF_COOKIE_SECURE": "false", "DATABASE_URL": PG_URL,
        "REDIS_URL": REDIS_URL, "CACHE_KEY_PREFIX": PREFIX, "Q_CLUSTER_NAME": PREFIX, "Q_WORKERS": str(WORKERS),
        "STATIC_ROOT": static_root, "LOG_LEVEL": "WARNING", "WEB_CONCURRENCY": str(WEB_PROCESSES),
    }  # fmt: skip


def manage(env: dict, *args: str) -> str:
    done = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"manage.py {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


class Process:
    """A `manage.py` command in its own process group, its output in a log file; stopped with SIGTERM."""

    def __init__(self, env: dict, log: Path, *args: str):
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen([sys.executable, "manage.py", *args], cwd=ROOT, env=env, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip

    def wait_http(self, url: str, what: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"{what} exited with {self.proc.returncode}:\n{self.tail()}")
            with contextlib.suppress(OSError):
                urllib.request.urlopen(url, timeout=1).read()
                return
            time.sleep(0.2)
        raise SystemExit(f"{what} did not answer {url} within {timeout:.0f} s:\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=20)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)


def login_cookie(url: str) -> str:
    """Sign in through /login/ as a browser does (GET the form, POST it with its CSRF token)."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    form = opener.open(f"{url}/login/").read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form).group(1)
    data = urllib.parse.urlencode({"username": USERNAME, "password": PASSWORD, "csrfmiddlewaretoken": token})
    opener.open(urllib.request.Request(f"{url}/login/", data=data.encode(), headers={"Referer": f"{url}/login/"}))
    cookies = {cookie.name: cookie.value for cookie in jar}
    if "sessionid" not in cookies:
        raise SystemExit(f"signing in as {USERNAME} did not give a session cookie")
    return "; ".join(f"{name}={value}" for name, value in cookies.items())


class DashboardLoad:
    """CONNECTIONS `wrk` connections loading the dashboard back to back, signed in, while the block runs: wrk is
    started for longer than any round and stopped with SIGINT when the block ends, on which it reports (bench/web.py's
    script: p95 from wrk's latency histogram, non-2xx answers — a redirect to the login page included — and socket
    errors). wrk is its own process, so this process's work starting runs does not slow the client down."""

    def __init__(self, url: str, cookie: str, script: str):
        self.url, self.cookie, self.script = url, cookie, script
        self.result: web.WrkResult | None = None

    def __enter__(self):
        # wrk's output to a pipe is block-buffered: stdbuf makes its first line ("Running …") arrive when it starts.
        line_buffered = ["stdbuf", "-oL"] if shutil.which("stdbuf") else []
        self.proc = subprocess.Popen(
            [*line_buffered, "wrk", f"-t{min(2, CONNECTIONS)}", f"-c{CONNECTIONS}", f"-d{ROUND_DEADLINE_S + 60}s", "--timeout", "10s",
             "-H", f"Cookie: {self.cookie}", "-s", self.script, self.url],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        if line_buffered:
            first = self.proc.stdout.readline()  # "Running 5m test @ …": its connections are being opened
            if not first.startswith("Running"):
                raise SystemExit(f"wrk did not start: {first}{self.proc.stdout.read()}")
        return self

    def __exit__(self, *exc):
        self.proc.send_signal(signal.SIGINT)
        out, _ = self.proc.communicate(timeout=60)
        self.result = web.wrk_result(out)

    @property
    def requests(self) -> int:
        return self.result.requests

    @property
    def errors(self) -> int:
        return self.result.errors

    def p95_ms(self) -> float:
        return self.result.p95_ms


# --- the Django part: in this process, against the bench database ---------------------------------------------


def setup(env: dict) -> None:
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def make_teams(mock_url: str) -> dict:
    from django.contrib.auth import get_user_model

    from apps.accounts.models import Membership, Team
    from apps.accounts.services import membership_set
    from apps.providers.models import ProviderEndpoint
    from apps.scores.models import ModelVariant

    user, _ = get_user_model().objects.get_or_create(username=USERNAME)
    user.set_password(PASSWORD)
    user.save()
    teams = {}
    for slug in TEAMS:
        team, _ = Team.objects.get_or_create(slug=slug, defaults={"name": slug.replace("-", " ").title()})
        endpoint, _ = ProviderEndpoint.objects.update_or_create(
            team=team, name="mockllm", defaults={"kind": "openai_compatible", "base_url": f"{mock_url}/v1",
                                                 "model_names": ["mock"], "max_concurrency": None},
        )  # fmt: skip
        variant, _ = ModelVariant.objects.get_or_create(team=team, model_name="mock", quantization="BF16")
        teams[slug] = (team, endpoint, variant)
    membership_set(user=user, team=teams["bench-many-a"][0], role=Membership.Role.MEMBER)  # its dashboard loads
    return teams


def forget_earlier_runs() -> None:
    """The bench teams' runs and jobs of an earlier bench run."""
    from apps.batches.models import LoadSweep
    from apps.experiments.models import Experiment
    from apps.jobs.models import Job

    for model in (LoadSweep, Experiment, Job):
        model.objects.filter(team__slug__in=TEAMS).delete()


@dataclass
class Run:
    kind: str
    pk: int
    team: str


def create_runs(teams: dict, round_no: int) -> list[tuple[Run, object]]:
    """The round's 120 runs, pending; returned with the object each start service takes."""
    from apps.batches.services import batch_create, sweep_create
    from apps.experiments.services import experiment_create

    made = []
    for slug, count in TEAMS.items():
        team, endpoint, variant = teams[slug]
        for index in range(count):
            kind, name = KINDS[index % 3], f"round {round_no} {slug} {index}"
            if kind == "experiment":
                obj = experiment_create(team=team, user=None, name=name, targets=[(endpoint, "mock")],
                                        prompt=f"Say something about {name}.", responses_per_item=RESPONSES,
                                        parameters={"max_tokens": TOKENS})  # fmt: skip
                made.append((Run(kind, obj.pk, slug), obj))
            elif kind == "parameter sweep":
                obj = batch_create(team=team, user=None, name=name, targets=[(endpoint, "mock")],
                                   prompt=f"Explain {name}.", concurrency=4,
                                   parameter_ranges={"temperature": [0.2, 0.8, 1.4], "top_p": [0.5, 1.0],
                                                     "max_tokens": TOKENS})  # fmt: skip
                made.append((Run(kind, obj.pk, slug), obj))
            else:
                obj = sweep_create(team=team, user=None, name=name, endpoint=endpoint, model="mock", variant=variant,
                                   mode="closed", levels=[2], trials=1, step_request_count=STEP_REQUESTS,
                                   output_tokens=TOKENS, prompt_tokens=32)  # fmt: skip
                made.append((Run(kind, obj.pk, slug), obj))
    return made


def start_all(made: list) -> None:
    from apps.batches.services import batch_start, sweep_start
    from apps.experiments.services import experiment_start

    for run, obj in made:
        if run.kind == "experiment":
            experiment_start(experiment=obj)
        elif run.kind == "parameter sweep":
            batch_start(batch=obj, confirm=True)
        else:
            sweep_start(sweep=obj)


def statuses(runs: list[Run]) -> dict[tuple[str, int], str]:
    from apps.batches.models import LoadSweep
    from apps.experiments.models import Experiment

    experiments = [r.pk for r in runs if r.kind != "load sweep"]
    sweeps = [r.pk for r in runs if r.kind == "load sweep"]
    found = {("e", pk): s for pk, s in Experiment.objects.filter(pk__in=experiments).values_list("pk", "status")}
    found |= {("s", pk): s for pk, s in LoadSweep.objects.filter(pk__in=sweeps).values_list("pk", "status")}
    return found


@dataclass
class Outcome:
    completed: int
    lost: int
    repeated: int
    failed_results: int
    wall_s: float
    first_wait_s: dict[str, float]
    peak_team: int
    peak_total: int
    not_completed: list[str]


def check(runs: list[Run], since) -> tuple[int, int, int, list[str]]:
    """(lost, repeated, failed results, runs not completed) of the round, counted from what is stored."""
    from django.db.models import Count

    from apps.batches.models import Batch, LoadSweep
    from apps.experiments.models import Experiment, Response
    from apps.hardware.models import PerformanceRun
    from apps.jobs.models import Job

    lost = repeated = failed = 0
    bad = []
    for run in runs:
        if run.kind == "load sweep":
            sweep = LoadSweep.objects.get(pk=run.pk)
            if sweep.status != "completed":
                bad.append(f"load sweep {run.pk} {sweep.status}: {sweep.error}")
            for step in sweep.steps.all():
                measured = list(PerformanceRun.objects.filter(sweep_step=step).annotate(n=Count("samples")))
                repeated += max(0, len(measured) - 1)
                stored = sum(m.n for m in measured[:1])
                lost += max(0, STEP_REQUESTS - stored)
                repeated += max(0, stored - STEP_REQUESTS)
            continue
        experiment = Experiment.objects.get(pk=run.pk)
        if experiment.status != "completed":
            bad.append(f"{run.kind} {run.pk} {experiment.status}: {experiment.error}")
        expected = RESPONSES if run.kind == "experiment" else Batch.objects.get(pk=run.pk).result_count
        responses = Response.objects.filter(experiment_id=run.pk)
        stored = responses.count()
        unique = responses.values("target_id", "item_key", "combination", "repetition").distinct().count()
        lost += max(0, expected - unique)
        repeated += stored - unique
        failed += responses.exclude(error_code="").count()
    repeated += Job.objects.filter(queued_at__gte=since, attempts__gt=1).count()
    return lost, repeated, failed, bad


def job_figures(since) -> tuple[dict[str, float], int, int]:
    """Each team's first-job wait, and the most jobs running at once for one team and in all (from their times)."""
    from apps.jobs.models import Job

    jobs = list(Job.objects.filter(queued_at__gte=since).values_list("team__slug", "queued_at", "started_at",
                                                                      "finished_at"))  # fmt: skip
    waits = {}
    for slug in TEAMS:
        own = [j for j in jobs if j[0] == slug]
        waits[slug] = (min(j[2] for j in own if j[2]) - min(j[1] for j in own)).total_seconds()

    def peak(rows) -> int:
        edges = sorted([(j[2], 1) for j in rows if j[2]] + [(j[3], -1) for j in rows if j[2] and j[3]],
                       key=lambda e: (e[0], e[1]))  # fmt: skip
        most = now = 0
        for _, step in edges:
            now += step
            most = max(most, now)
        return most

    return waits, max(peak([j for j in jobs if j[0] == slug]) for slug in TEAMS), peak(jobs)


def one_round(teams: dict, round_no: int, web_url: str, cookie: str, script: str) -> tuple[Outcome, DashboardLoad]:
    from django.utils import timezone

    forget_earlier_runs()  # every round starts from the same data: the dashboard and the starts read the team's runs
    made = create_runs(teams, round_no)
    runs = [run for run, _ in made]
    since = timezone.now() - timedelta(seconds=1)
    with DashboardLoad(f"{web_url}/", cookie, script) as load:
        started = time.perf_counter()
        start_all(made)
        queued_s = time.perf_counter() - started
        deadline = time.monotonic() + ROUND_DEADLINE_S
        while time.monotonic() < deadline:
            done = sum(status in ("completed", "failed", "cancelled") for status in statuses(runs).values())
            if done == len(runs):
                break
            time.sleep(0.25)
        wall = time.perf_counter() - started
    lost, repeated, failed, bad = check(runs, since)
    waits, peak_team, peak_total = job_figures(since)
    completed = sum(status == "completed" for status in statuses(runs).values())
    print(f"  round {round_no}: {completed} of {len(runs)} runs completed in {wall:.1f} s (all {len(runs)} queued "
          f"in {queued_s:.1f} s), {lost} results lost, {repeated} repeated, {failed} failed requests; dashboard "
          f"{load.requests} loads, p95 {load.p95_ms():.0f} ms, {load.errors} errors; first-job wait "
          + ", ".join(f"{slug[-1].upper()} {wait:.1f} s" for slug, wait in waits.items())
          + f"; most jobs running at once: {peak_team} of one team, {peak_total} in all", flush=True)  # fmt: skip
    for line in bad[:5]:
        print(f"    not completed: {line}")
    return Outcome(completed, lost, repeated, failed, wall, waits, peak_team, peak_total, bad), load


def main() -> int:
    if not shutil.which("wrk"):
        print("bench/many_runs.py needs wrk: sudo apt-get install wrk (Debian/Ubuntu) or brew install wrk")
        return 1
    started = time.monotonic()
    static_root = Path(tempfile.gettempdir()) / "llmbench-bench-many-static"
    logs = Path(tempfile.mkdtemp(prefix="llmbench-bench-many-"))
    script = str(logs / "p95.lua")
    Path(script).write_text(web.WRK_SCRIPT)
    env = bench_env(str(static_root))
    total = sum(TEAMS.values())
    print(f"== many runs at once: {total} runs of 3 teams, {WEB_PROCESSES} web processes + {WORKERS} workers, "
          f"PostgreSQL + Redis, {len(os.sched_getaffinity(0))} CPUs, {ROUNDS} round(s)", flush=True)  # fmt: skip
    print(f"   load average of the machine (1, 5, 15 min): {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    ensure_database(PG_URL)
    forget_redis_keys()
    manage(env, "migrate", "--noinput")
    if not static_up_to_date(static_root):
        manage(env, "collectstatic", "--noinput")
    setup(env)
    from django.conf import settings

    print(f"   database and static files ready in {time.monotonic() - started:.0f} s; JOBS_MAX_RUNNING "
          f"{settings.JOBS_MAX_RUNNING}, JOBS_TEAM_MAX_RUNNING {settings.JOBS_TEAM_MAX_RUNNING}",
          flush=True)  # fmt: skip
    mock_port, web_port = free_port(), free_port()
    mock = Process(env, logs / "mockllm.log", "mockllm", "--port", str(mock_port), "--ttft-ms", "20",
                   "--itl-ms", "2", "--output-tokens", str(TOKENS))  # fmt: skip
    server = None
    try:
        mock.wait_http(f"http://127.0.0.1:{mock_port}/v1/models", "manage.py mockllm")
        teams = make_teams(f"http://127.0.0.1:{mock_port}")
        server = Process(env, logs / "serve.log", "serve", "--port", str(web_port), "--workers",
                         str(WEB_PROCESSES))  # fmt: skip
        web_url = f"http://127.0.0.1:{web_port}"
        server.wait_http(f"{web_url}/health", "manage.py serve")
        wait_workers(server)
        cookie = login_cookie(web_url)
        with DashboardLoad(f"{web_url}/", cookie, script) as idle:
            time.sleep(IDLE_S)
        print(
            f"   dashboard before the burst (reference), {CONNECTIONS} clients for {IDLE_S} s: "
            f"{idle.requests} loads, p95 {idle.p95_ms():.0f} ms, {idle.errors} errors",
            flush=True,
        )
        outcomes = []
        for round_no in range(1, ROUNDS + 1):
            outcome, _ = one_round(teams, round_no, web_url, cookie, script)
            outcomes.append((outcome, _))
        if "Traceback" in server.log.read_text(errors="replace"):
            print(f"   the server logged errors; the last lines of its log:\n{server.tail()}")
    finally:
        if server is not None:
            server.stop()
        mock.stop()
    shutil.rmtree(logs, ignore_errors=True)

    report = Report()
    results = [o for o, _ in outcomes]
    median = statistics.median
    report.line(f"many runs: runs completed of {total} (fewest of {ROUNDS} rounds)", min(o.completed for o in results),
                total, "runs", higher_is_better=True)  # fmt: skip
    zero_line(report, "many runs: results lost (all rounds)", sum(o.lost for o in results))
    zero_line(report, "many runs: results repeated (all rounds)", sum(o.repeated for o in results))
    report.line(f"many runs: wall time of {total} runs (median of {ROUNDS})", median(o.wall_s for o in results),
                WALL_TARGET_S, "s")  # fmt: skip
    report.line(f"many runs: dashboard p95 during the burst, {CONNECTIONS} clients (median)",
                median(load.p95_ms() for _, load in outcomes), 300, "ms")  # fmt: skip
    zero_line(report, "many runs: dashboard errors (all rounds)", sum(load.errors for _, load in outcomes))
    report.line(f"many runs: longest wait of a team's first job (median of {ROUNDS})",
                median(max(o.first_wait_s.values()) for o in results), 30, "s")  # fmt: skip
    report.line(f"many runs: most jobs of one team running at once (cap {settings.JOBS_TEAM_MAX_RUNNING})",
                max(o.peak_team for o in results), settings.JOBS_TEAM_MAX_RUNNING, "jobs")  # fmt: skip
    print(f"   whole many-runs bench: {time.monotonic() - started:.0f} s")
    return report.close()


def wait_workers(server: Process, timeout: float = 90) -> None:
    """Until the task cluster's WORKERS processes beat (llmbench/workers.py)."""
    from django.utils import timezone

    from llmbench.models import TaskWorker
    from llmbench.workers import WORKER_LIVE_S

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        fresh = timezone.now() - timedelta(seconds=WORKER_LIVE_S)
        if TaskWorker.objects.filter(cluster=PREFIX, beat_at__gte=fresh).count() >= WORKERS:
            return
        if server.proc.poll() is not None:
            break
        time.sleep(0.5)
    raise SystemExit(f"the task cluster did not start {WORKERS} workers within {timeout:.0f} s:\n{server.tail()}")


def zero_line(report: Report, name: str, count: int) -> None:
    """A `Report` line whose target is zero (a ratio would divide by it)."""
    report.count += 1
    if count:
        report.missed.append(name)
    print(f"{name:<58} {count:12,.1f} {'':<6} target {0:10,.1f} {'':<6} ratio {'-':>6}  {'MISSED' if count else 'ok'}")


if __name__ == "__main__":
    sys.exit(main())
