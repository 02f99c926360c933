"""Read queries of the dashboard (the home page) and of its websocket: running jobs with their
progress, the latest runs, experiments and batches, this month's cost against the team's budget,
and the test cases waiting for review. Each takes the team and runs a fixed number of queries."""

import functools
import hashlib
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import TypedDict

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from django.db import connection
from django.db.models import Count, IntegerField, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce
from django.urls import reverse
from django.utils import timezone

from apps.accounts.models import Membership, Team
from apps.accounts.services import active_membership
from apps.batches.models import Batch, LoadSweep, Status
from apps.benchmarks.models import BenchmarkRun
from apps.experiments.models import Experiment, ExperimentTarget, Response, TestCase
from apps.hardware.models import HardwareProfile, PerformanceRun, RunSummary
from apps.providers.budget import month_spend_by_endpoint
from apps.scores.models import Benchmark, ModelVariant, Score
from llmbench.db import prepared_cursor

LATEST = 5  # rows of each "latest" list
# The latest lists are cached under a version that holds every value they show (page_figures), so the
# cache is never stale; this only bounds how long unused entries stay.
LATEST_TTL_S = 600
RUNNING_LIMIT = 10  # jobs of each kind on the tile; more running at once is not a dashboard's job
RECENT = timedelta(minutes=10)  # a job that finished this recently is sent to open dashboards for their "Latest" lists
BUDGET_NEARING_PERCENT = 80.0


class Job(TypedDict):
    """One running or queued job as the tile shows it (or a just finished one, which the websocket sends
    for the "Latest" lists)."""

    kind: str  # "batch" | "sweep" | "experiment"
    id: int
    name: str
    status: str
    progress: float  # 0–100
    completed: int
    total: int
    unit: str  # what completed and total count: "results", "steps", "responses"
    url: str


def _percent(done: int, total: int) -> float:
    return round(min(100.0, 100.0 * done / total), 1) if total else 0.0


def _job(*, kind: str, pk: int, name: str, status: str, done: int, total: int, unit: str, url: str) -> Job:
    return Job(kind=kind, id=pk, name=name, status=status, progress=_percent(done, total), completed=done,
               total=total, unit=unit, url=url)  # fmt: skip


# --- plain SQL for the page's small figures --------------------------------------------------------
# The dashboard is read on every visit. Its counts and the version of its analytical tiles are a
# handful of scalar subqueries; the ORM spent more CPU compiling each of them than the database
# spent answering, so they are written once as SQL (from the models' table and column names).


def _q(name: str) -> str:
    return connection.ops.quote_name(name)


def _table(model) -> str:
    return _q(model._meta.db_table)


def _column(model, field: str) -> str:
    return _q(model._meta.get_field(field).column)


def _team_count(model) -> str:
    return f"(SELECT COUNT(*) FROM {_table(model)} WHERE {_column(model, 'team')} = %s)"


def _scalars(selects: list[str], params: list) -> tuple:
    """One row of scalar subqueries, in one round trip."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {', '.join(selects)}", params)
        return cursor.fetchone()


COUNTED = {"variants": ModelVariant, "benchmarks": Benchmark, "scores": Score, "runs": PerformanceRun,
           "hardware": HardwareProfile}  # fmt: skip


def team_counts(team: Team) -> dict[str, int]:
    """How many model variants, benchmarks, scores, performance runs and hardware profiles `team` has
    (one query)."""
    row = _scalars([_team_count(model) for model in COUNTED.values()], [team.pk] * len(COUNTED))
    return {name: int(n) for name, n in zip(COUNTED, row, strict=True)}


def _active(status: str) -> bool:
    return status in (Status.RUNNING, Status.PENDING)


JOB_KINDS = ("batch", "sweep", "experiment")


def running_jobs(team: Team, *, kinds: tuple[str, ...] = JOB_KINDS) -> list[Job]:
    """Parameter sweeps, load sweeps and experiments of `team` that run or are queued (batches), running
    first: the "Running jobs" tile. Finished ones are not here: they are in the "Latest" lists. `kinds`
    leaves out the kinds known to have nothing running (see page_figures)."""
    return dashboard_jobs(team, kinds=kinds)[0]


def dashboard_jobs(team: Team, *, kinds: tuple[str, ...] = JOB_KINDS) -> tuple[list[Job], list[Job]]:
    """(running or queued jobs, running first; jobs that finished in the last RECENT minutes, newest first)
    of `team`: a query of a few rows per kind (all three kinds unless `kinds` says), shared by the page
    and its websocket."""
    recent = timezone.now() - RECENT
    jobs: list[Job] = []
    queued_batches: set[int] = set()
    if "batch" in kinds:
        batches = (
            Batch.objects.filter(experiment__team=team)
            .filter(
                Q(experiment__status=Status.RUNNING)
                | Q(experiment__status=Status.PENDING, queued_at__isnull=False)
                | Q(experiment__finished_at__gte=recent)
            )
            .select_related("experiment")
            .only("pk", "completed_results", "result_count", "queued_at", "experiment__name", "experiment__status")
            .order_by("-experiment__created_at", "-pk")[:RUNNING_LIMIT]
        )
        jobs += [
            _job(kind="batch", pk=b.pk, name=b.experiment.name, status=b.experiment.status, done=b.completed_results,
                 total=b.result_count, unit="results", url=reverse("batches:batch", args=[b.pk]))
            for b in batches
        ]  # fmt: skip
        queued_batches = {b.pk for b in batches if b.experiment.status == Status.PENDING and b.queued_at is not None}
    if "sweep" in kinds:
        sweeps = (
            LoadSweep.objects.filter(team=team)
            .filter(Q(status=Status.RUNNING) | Q(finished_at__gte=recent))
            .annotate(steps_total=Count("steps"), steps_done=Count("steps", filter=Q(steps__status=Status.COMPLETED)))
            .only("pk", "name", "status")
            .order_by("-created_at", "-pk")[:RUNNING_LIMIT]
        )
        jobs += [
            _job(kind="sweep", pk=s.pk, name=s.name, status=s.status, done=s.steps_done, total=s.steps_total,
                 unit="steps", url=reverse("batches:sweep", args=[s.pk]))
            for s in sweeps
        ]  # fmt: skip
    if "experiment" in kinds:
        experiments = (
            _with_response_counts(Experiment.objects.filter(team=team, kind=Experiment.Kind.SINGLE))
            .filter(Q(status=Experiment.Status.RUNNING) | Q(finished_at__gte=recent))
            .only("pk", "name", "status", "responses_per_item")
            .order_by("-created_at", "-pk")[:RUNNING_LIMIT]
        )
        jobs += [
            _job(kind="experiment", pk=e.pk, name=e.name, status=e.status, done=e.responses_stored,
                 total=e.target_count * max(1, e.approved_case_count) * e.responses_per_item, unit="responses",
                 url=reverse("experiments:detail", args=[e.pk]))
            for e in experiments
        ]  # fmt: skip
    active = [j for j in jobs if j["status"] == Status.RUNNING or (j["kind"] == "batch" and j["id"] in queued_batches)]
    finished = [j for j in jobs if not _active(j["status"])]
    order = {Status.RUNNING: 0, Status.PENDING: 1}
    return sorted(active, key=lambda job: order.get(job["status"], 2)), finished  # stable: newest first within each


def _count_of(queryset: QuerySet, field: str) -> Coalesce:
    """A correlated COUNT(*) of `queryset` rows whose `field` is the outer row (0 when none)."""
    counted = queryset.filter(**{field: OuterRef("pk")}).order_by().values(field).annotate(n=Count("*")).values("n")
    return Coalesce(Subquery(counted, output_field=IntegerField()), Value(0))


def _with_response_counts(experiments: QuerySet) -> QuerySet:
    """Experiments with what their progress needs: responses stored, targets, approved test cases
    (none: the single prompt). Subqueries, not joins, so the counts do not multiply each other."""
    return experiments.annotate(
        responses_stored=_count_of(Response.objects.all(), "experiment"),
        target_count=_count_of(ExperimentTarget.objects.all(), "experiment"),
        approved_case_count=_count_of(
            Experiment.test_cases.through.objects.filter(testcase__status=TestCase.Status.APPROVED), "experiment"
        ),
    )


@dataclass(frozen=True)
class Latest:
    runs: list[PerformanceRun]
    experiments: list[Experiment]
    batches: list[Batch]
    sweeps: list[LoadSweep]


def latest(team: Team, *, version: str | None = None) -> Latest:
    """The LATEST newest performance runs, experiments (not parameter sweeps), parameter sweeps and load
    sweeps: where a job goes once it has finished. Given the lists' `version` (page_figures), from the
    cache when it has them under that version."""
    key = None
    if version is not None:
        key = f"dashboard:latest:v1:team{team.pk}:{hashlib.sha256(version.encode()).hexdigest()[:32]}"
        cached = cache.get(key)
        if cached is not None:
            return cached
    runs = PerformanceRun.objects.filter(team=team).select_related("variant", "hardware")[:LATEST]
    experiments = Experiment.objects.filter(team=team, kind=Experiment.Kind.SINGLE).only(
        "pk", "name", "status", "created_at"
    )[:LATEST]
    batches = (
        Batch.objects.filter(experiment__team=team)
        .select_related("experiment")
        .only("pk", "experiment__name", "experiment__status", "experiment__created_at")
        .order_by("-experiment__created_at", "-pk")[:LATEST]
    )
    sweeps = LoadSweep.objects.filter(team=team).only("pk", "name", "status", "created_at")[:LATEST]
    found = Latest(runs=list(runs), experiments=list(experiments), batches=list(batches), sweeps=list(sweeps))
    if key is not None:
        cache.set(key, found, LATEST_TTL_S)
    return found


@dataclass(frozen=True)
class EndpointCost:
    endpoint_id: int
    name: str
    cost_usd: float
    responses: int


@dataclass(frozen=True)
class MonthCost:
    month_start: datetime
    by_endpoint: list[EndpointCost]  # most expensive first
    total_usd: float
    budget_usd: float | None
    percent: float | None  # of the budget; None without one
    level: str  # "none" (no budget) | "ok" | "nearing" | "over"
    hard_limit: bool = False  # runs are refused and stopped at the budget (apps.providers.budget)


def month_start_utc(now: datetime | None = None) -> datetime:
    """Midnight UTC on the first day of the current calendar month."""
    now = (now or timezone.now()).astimezone(UTC)
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def month_cost(team: Team, *, now: datetime | None = None) -> MonthCost:
    """What `team`'s responses cost since the start of this month (UTC), per endpoint, against its
    monthly budget; one query. Simulated responses cost nothing real and are left out."""
    start = month_start_utc(now)
    return _month_cost_against_budget(team, start, _month_cost_by_endpoint(team, start))


def _month_cost_by_endpoint(team: Team, start: datetime) -> list[EndpointCost]:
    """Metered cost of every run kind (experiments, parameter sweeps, benchmark runs) per endpoint: the rows the
    team's budget is checked against (apps.providers.budget), so the tile and a refusal show the same total."""
    return [
        EndpointCost(endpoint_id=row.endpoint_id, name=row.name, cost_usd=row.cost_usd, responses=row.answers)
        for row in month_spend_by_endpoint(team.pk, start)
    ]


def _month_cost_against_budget(team: Team, start: datetime, by_endpoint: list[EndpointCost]) -> MonthCost:
    total = sum(row.cost_usd for row in by_endpoint)
    budget = team.monthly_budget_usd
    if budget is None:
        percent, level = None, "none"
    else:
        percent = 100.0 * total / budget if budget > 0 else (100.0 if total > 0 else 0.0)
        level = "over" if percent >= 100 else "nearing" if percent >= BUDGET_NEARING_PERCENT else "ok"
    return MonthCost(month_start=start, by_endpoint=by_endpoint, total_usd=total, budget_usd=budget,
                     percent=None if percent is None else round(percent, 1), level=level,
                     hard_limit=budget is not None and team.monthly_budget_hard_limit)  # fmt: skip


def pending_testcase_count(team: Team) -> int:
    """Current versions of `team`'s test cases waiting for an admin's review."""
    return TestCase.objects.filter(team=team, status=TestCase.Status.PENDING, is_current=True).count()


def session_membership(user: AbstractBaseUser, session) -> Membership | None:
    """The active membership of a websocket's user and session, picked exactly as the middleware
    picks it for a page (ADR 0002): the session's team, else the user's first team."""
    # active_membership reads only .user and .session of the request it is given.
    return active_membership(SimpleNamespace(user=user, session=session))


def quality_trend(team: Team) -> dict:
    """The last 30 days of overall quality per day (the analytics view's figures) and a small chart."""
    from django.utils.safestring import mark_safe

    from apps.analytics.filters import parse_filters
    from apps.analytics.selectors import quality_trends
    from llmbench import svg

    trend = quality_trends(team, parse_filters({"timeframe": "30d"}))
    points = [(point["period"], point["mean"]) for point in trend["points"]]
    chart = svg.line_chart([svg.Series("overall", points)], width=360, height=160, y_label="points") if points else ""
    return {**trend, "chart": mark_safe(chart)}  # llmbench.svg escapes every text it draws


def regressions(team: Team, *, limit: int = 5) -> dict:
    """The significant regressions of the latest runs (apps.analytics), the first `limit` of them."""
    from apps.analytics.selectors import regressions as all_regressions

    found = all_regressions(team)
    flagged = [c for c in found["comparisons"] if c["status"] == "regression"]
    return {"count": found["regressions"], "compared": len(found["comparisons"]), "items": flagged[:limit]}


# --- the analytical tiles, cached per team ----------------------------------------------------------
# The month's cost, the quality trend and the regressions aggregate the team's responses and runs:
# most of the page's CPU (ten queries and the statistics). They are cached per team under a version
# read from the database in one cheap query, so a response, run, experiment or summary stored by any
# process (the web or a worker) changes the key at once; a change the version cannot see (an
# endpoint or model renamed) shows within TILES_TTL_S.
TILES_TTL_S = 60


def _analytics_version_selects() -> list[str]:
    """The scalar subqueries of analytics_version, each taking the team's id once."""
    experiment_team = f"e.{_column(Experiment, 'team')} = %s"
    run_team = f"p.{_column(PerformanceRun, 'team')} = %s"
    return [
        f"(SELECT MAX(r.{_q('id')}) FROM {_table(Response)} r INNER JOIN {_table(Experiment)} e"
        f" ON e.{_q('id')} = r.{_column(Response, 'experiment')} WHERE {experiment_team})",
        f"(SELECT COUNT(*) FROM {_table(Experiment)} e WHERE {experiment_team})",
        f"(SELECT MAX(e.{_q('id')}) FROM {_table(Experiment)} e WHERE {experiment_team})",
        f"(SELECT MAX(e.{_column(Experiment, 'finished_at')}) FROM {_table(Experiment)} e WHERE {experiment_team})",
        f"(SELECT COUNT(*) FROM {_table(PerformanceRun)} p WHERE {run_team})",
        f"(SELECT MAX(p.{_q('id')}) FROM {_table(PerformanceRun)} p WHERE {run_team})",
        f"(SELECT MAX(s.{_column(RunSummary, 'computed_at')}) FROM {_table(RunSummary)} s INNER JOIN"
        f" {_table(PerformanceRun)} p ON p.{_q('id')} = s.{_column(RunSummary, 'run')} WHERE {run_team})",
        # benchmark answers count in the month's cost: their runs' counters move with every answer stored
        f"(SELECT COUNT(*) || '/' || COALESCE(SUM(b.{_column(BenchmarkRun, 'completed_answers')}), 0) || '/'"
        f" || COALESCE(SUM(b.{_column(BenchmarkRun, 'failed_answers')}), 0) FROM {_table(BenchmarkRun)} b"
        f" WHERE b.{_column(BenchmarkRun, 'team')} = %s)",
    ]


def analytics_version(team: Team) -> str:
    """What the cached tiles were computed from: the newest response, the experiments (how many, the
    newest, the last finished), the runs (how many, the newest) and the last summary computed."""
    selects = _analytics_version_selects()
    return "|".join(str(value) for value in _scalars(selects, [team.pk] * len(selects)))


@dataclass(frozen=True)
class AnalyticsTiles:
    cost: MonthCost
    trend: dict
    regressions: dict
    key: str  # what the trend and the regressions are cached under: the team, the day and the data's version


def analytics_tiles(team: Team, *, version: str | None = None, busy: bool = False) -> AnalyticsTiles:
    """This month's cost, the 30-day quality trend and the regressions of `team`: from the cache when
    nothing they read has changed since, else computed and cached (see TILES_TTL_S). `version` is
    analytics_version(team) when the caller has read it already (page_figures). `busy`: some run of the
    team is going, so its version moves with every result stored; the tiles computed within the last
    DASHBOARD_TILES_REFRESH_S then stand (a burst of runs would otherwise recompute them on every visit)."""
    now = timezone.now()
    start = month_start_utc(now)
    # The team (never another's), its simulated-results default (the regressions follow it), the day
    # (the trend's window, the month) and the version of the data.
    base = f"dashboard:tiles:v1:team{team.pk}:sim{int(team.show_simulated)}:{now.astimezone(UTC).date().isoformat()}"
    key = (
        f"{base}:{hashlib.sha256((analytics_version(team) if version is None else version).encode()).hexdigest()[:32]}"
    )
    cached = cache.get(key)
    refresh_s = settings.DASHBOARD_TILES_REFRESH_S
    if cached is None and busy and refresh_s:
        recent = cache.get(f"{base}:recent")  # (key, when computed): the last tiles computed for the team
        if recent is not None and time.time() - recent[1] < refresh_s:
            recent_tiles = cache.get(recent[0])
            if recent_tiles is not None:
                key, cached = recent[0], recent_tiles
    if cached is None:
        cached = {
            "cost_by_endpoint": _month_cost_by_endpoint(team, start),
            "trend": quality_trend(team),
            "regressions": regressions(team),
        }
        cache.set_many({key: cached, f"{base}:recent": (key, time.time())}, TILES_TTL_S)
    # The budget is the team's current one, never a cached copy.
    cost = _month_cost_against_budget(team, start, cached["cost_by_endpoint"])
    return AnalyticsTiles(cost=cost, trend=cached["trend"], regressions=cached["regressions"], key=key)


# --- the page's figures, in one query ---------------------------------------------------------------
# Every figure the page reads fresh on each visit is one scalar subquery of a single statement: the
# counts, the test cases to review, which kinds of job have something running (the others' queries
# are skipped), the version of the analytical tiles and the version of the latest lists.


def _token(expression: str) -> str:
    """`expression` as a self-delimiting text: its length, ":" and itself, or "~" for NULL; so no two
    different rows read the same (a name holding a separator cannot mimic the next field)."""
    text = f"CAST({expression} AS TEXT)"
    return f"COALESCE(CAST(LENGTH({text}) AS TEXT) || ':' || {text}, '~')"


def _fingerprint(values: list[str], source: str) -> str:
    """A subquery: the `values` of every row of `source` (FROM … ORDER BY … LIMIT) as one text."""
    row = " || ".join(_token(value) for value in values)
    aggregate = "string_agg(f, ';')" if connection.vendor == "postgresql" else "group_concat(f, ';')"
    return f"(SELECT {aggregate} FROM (SELECT {row} AS f {source}) x)"


def _latest_version_selects() -> list[str]:
    """Subqueries, each taking the team's id once, holding every value the latest lists show (latest()):
    the rows' ids, names and statuses, and the runs' label (model variant, hardware, workload), simulated
    flag and time. Any change to what the lists show changes one of them."""
    pk = _q("id")
    experiment_name, experiment_status = _column(Experiment, "name"), _column(Experiment, "status")

    def newest(model, alias: str, key: str) -> str:
        return f"ORDER BY {alias}.{_column(model, 'created_at')} DESC, {key} DESC LIMIT {LATEST}"

    run_columns = ["name", "concurrency", "request_rate_rps", "is_simulated", "created_at"]
    runs = _fingerprint(
        [f"p.{pk}", *(f"p.{_column(PerformanceRun, name)}" for name in run_columns),
         f"v.{_column(ModelVariant, 'model_name')}", f"v.{_column(ModelVariant, 'quantization')}",
         f"h.{_column(HardwareProfile, 'name')}"],
        f"FROM {_table(PerformanceRun)} p"
        f" INNER JOIN {_table(ModelVariant)} v ON v.{pk} = p.{_column(PerformanceRun, 'variant')}"
        f" LEFT OUTER JOIN {_table(HardwareProfile)} h ON h.{pk} = p.{_column(PerformanceRun, 'hardware')}"
        f" WHERE p.{_column(PerformanceRun, 'team')} = %s {newest(PerformanceRun, 'p', f'p.{pk}')}",
    )  # fmt: skip
    experiments = _fingerprint(
        [f"e.{pk}", f"e.{experiment_name}", f"e.{experiment_status}"],
        f"FROM {_table(Experiment)} e WHERE e.{_column(Experiment, 'team')} = %s"
        f" AND e.{_column(Experiment, 'kind')} = '{Experiment.Kind.SINGLE.value}' {newest(Experiment, 'e', f'e.{pk}')}",
    )
    batch_pk = f"b.{_column(Batch, 'experiment')}"
    batches = _fingerprint(
        [batch_pk, f"e.{experiment_name}", f"e.{experiment_status}"],
        f"FROM {_table(Batch)} b INNER JOIN {_table(Experiment)} e ON e.{pk} = {batch_pk}"
        f" WHERE e.{_column(Experiment, 'team')} = %s {newest(Experiment, 'e', batch_pk)}",
    )
    sweeps = _fingerprint(
        [f"s.{pk}", f"s.{_column(LoadSweep, 'name')}", f"s.{_column(LoadSweep, 'status')}"],
        f"FROM {_table(LoadSweep)} s WHERE s.{_column(LoadSweep, 'team')} = %s {newest(LoadSweep, 's', f's.{pk}')}",
    )
    return [runs, experiments, batches, sweeps]


def _running_selects() -> dict[str, str]:
    """Per kind of job, a subquery taking the team's id once: does the team have one that running_jobs
    shows (the same conditions as dashboard_jobs' active ones)?"""
    pk = _q("id")
    experiment_team, status = _column(Experiment, "team"), _column(Experiment, "status")
    return {
        "batch": f"EXISTS (SELECT 1 FROM {_table(Batch)} b INNER JOIN {_table(Experiment)} e"
                 f" ON e.{pk} = b.{_column(Batch, 'experiment')} WHERE e.{experiment_team} = %s"
                 f" AND (e.{status} = '{Status.RUNNING.value}'"
                 f" OR (e.{status} = '{Status.PENDING.value}' AND b.{_column(Batch, 'queued_at')} IS NOT NULL)))",
        "sweep": f"EXISTS (SELECT 1 FROM {_table(LoadSweep)} s WHERE s.{_column(LoadSweep, 'team')} = %s"
                 f" AND s.{_column(LoadSweep, 'status')} = '{Status.RUNNING.value}')",
        "experiment": f"EXISTS (SELECT 1 FROM {_table(Experiment)} e WHERE e.{experiment_team} = %s"
                      f" AND e.{_column(Experiment, 'kind')} = '{Experiment.Kind.SINGLE.value}'"
                      f" AND e.{status} = '{Experiment.Status.RUNNING.value}')",
    }  # fmt: skip


def _pending_testcases_select() -> str:
    return (
        f"(SELECT COUNT(*) FROM {_table(TestCase)} t WHERE t.{_column(TestCase, 'team')} = %s"
        f" AND t.{_column(TestCase, 'status')} = '{TestCase.Status.PENDING.value}'"
        f" AND t.{_column(TestCase, 'is_current')} = %s)"
    )


@dataclass(frozen=True)
class PageFigures:
    counts: dict[str, int]  # team_counts()
    pending_testcases: int | None  # pending_testcase_count(), when asked for
    running_kinds: tuple[str, ...]  # the kinds of job that have something on the "Running jobs" tile
    tiles_version: str  # analytics_version()
    latest_version: str  # every value the latest lists show


@functools.cache
def _page_figures_sql(vendor: str, with_pending_testcases: bool) -> tuple[str, int, int, int]:
    """(the statement; how many of its subqueries take the team's id; how many values make the tiles'
    version, and the lists'), built once per database vendor: only the team changes between visits."""
    running = _running_selects()
    tiles, lists = _analytics_version_selects(), _latest_version_selects()
    selects = [_team_count(model) for model in COUNTED.values()] + [running[kind] for kind in JOB_KINDS]
    selects += tiles + lists
    team_params = len(selects)
    if with_pending_testcases:
        selects.append(_pending_testcases_select())
    return f"SELECT {', '.join(selects)}", team_params, len(tiles), len(lists)


def page_figures(team: Team, *, with_pending_testcases: bool) -> PageFigures:
    """What the dashboard reads fresh on every visit, in one query (see above)."""
    sql, team_params, tiles, lists = _page_figures_sql(connection.vendor, with_pending_testcases)
    params: list = [team.pk] * team_params + ([team.pk, True] if with_pending_testcases else [])
    with prepared_cursor(connection) as cursor:  # planned once per connection (llmbench/db.py)
        cursor.execute(sql, params)
        row = list(cursor.fetchone())
    counts = {name: int(row.pop(0)) for name in COUNTED}
    running_kinds = tuple(kind for kind in JOB_KINDS if row.pop(0))
    tiles_version = "|".join(str(row.pop(0)) for _ in range(tiles))
    latest_version = "|".join(str(row.pop(0)) for _ in range(lists))
    pending = int(row.pop(0)) if with_pending_testcases else None
    return PageFigures(counts=counts, pending_testcases=pending, running_kinds=running_kinds,
                       tiles_version=tiles_version, latest_version=latest_version)  # fmt: skip
