"""Read queries of the dashboard (the home page) and of its websocket: running jobs with their
progress, the latest runs, experiments and batches, this month's cost against the team's budget,
and the test cases waiting for review. Each takes the team and runs a fixed number of queries."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import TypedDict

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Count, IntegerField, OuterRef, Q, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Coalesce
from django.urls import reverse
from django.utils import timezone

from apps.accounts.models import Membership, Team
from apps.accounts.services import active_membership
from apps.batches.models import Batch, LoadSweep, Status
from apps.experiments.models import Experiment, ExperimentTarget, Response, TestCase
from apps.hardware.models import HardwareProfile, PerformanceRun
from apps.scores.models import Benchmark, ModelVariant, Score

LATEST = 5  # rows of each "latest" list
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


def team_counts(team: Team) -> dict[str, int]:
    """How many model variants, benchmarks, scores, performance runs and hardware profiles `team` has."""
    return {
        "variants": ModelVariant.objects.filter(team=team).count(),
        "benchmarks": Benchmark.objects.filter(team=team).count(),
        "scores": Score.objects.filter(team=team).count(),
        "runs": PerformanceRun.objects.filter(team=team).count(),
        "hardware": HardwareProfile.objects.filter(team=team).count(),
    }


def _active(status: str) -> bool:
    return status in (Status.RUNNING, Status.PENDING)


def running_jobs(team: Team) -> list[Job]:
    """Parameter sweeps, load sweeps and experiments of `team` that run or are queued (batches), running
    first: the "Running jobs" tile. Finished ones are not here: they are in the "Latest" lists."""
    return dashboard_jobs(team)[0]


def dashboard_jobs(team: Team) -> tuple[list[Job], list[Job]]:
    """(running or queued jobs, running first; jobs that finished in the last RECENT minutes, newest first)
    of `team`: three queries of a few rows each, shared by the page and its websocket."""
    recent = timezone.now() - RECENT
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
    sweeps = (
        LoadSweep.objects.filter(team=team)
        .filter(Q(status=Status.RUNNING) | Q(finished_at__gte=recent))
        .annotate(steps_total=Count("steps"), steps_done=Count("steps", filter=Q(steps__status=Status.COMPLETED)))
        .only("pk", "name", "status")
        .order_by("-created_at", "-pk")[:RUNNING_LIMIT]
    )
    experiments = (
        _with_response_counts(Experiment.objects.filter(team=team, kind=Experiment.Kind.SINGLE))
        .filter(Q(status=Experiment.Status.RUNNING) | Q(finished_at__gte=recent))
        .only("pk", "name", "status", "responses_per_item")
        .order_by("-created_at", "-pk")[:RUNNING_LIMIT]
    )
    jobs = [
        _job(kind="batch", pk=b.pk, name=b.experiment.name, status=b.experiment.status, done=b.completed_results,
             total=b.result_count, unit="results", url=reverse("batches:batch", args=[b.pk]))
        for b in batches
    ] + [
        _job(kind="sweep", pk=s.pk, name=s.name, status=s.status, done=s.steps_done, total=s.steps_total,
             unit="steps", url=reverse("batches:sweep", args=[s.pk]))
        for s in sweeps
    ] + [
        _job(kind="experiment", pk=e.pk, name=e.name, status=e.status, done=e.responses_stored,
             total=e.target_count * max(1, e.approved_case_count) * e.responses_per_item, unit="responses",
             url=reverse("experiments:detail", args=[e.pk]))
        for e in experiments
    ]  # fmt: skip
    queued_batches = {b.pk for b in batches if b.experiment.status == Status.PENDING and b.queued_at is not None}
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


def latest(team: Team) -> Latest:
    """The LATEST newest performance runs, experiments (not parameter sweeps), parameter sweeps and load
    sweeps: where a job goes once it has finished."""
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
    return Latest(runs=list(runs), experiments=list(experiments), batches=list(batches), sweeps=list(sweeps))


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


def month_start_utc(now: datetime | None = None) -> datetime:
    """Midnight UTC on the first day of the current calendar month."""
    now = (now or timezone.now()).astimezone(UTC)
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def month_cost(team: Team, *, now: datetime | None = None) -> MonthCost:
    """What `team`'s responses cost since the start of this month (UTC), per endpoint, against its
    monthly budget; one query. Simulated responses cost nothing real and are left out."""
    start = month_start_utc(now)
    rows = (
        Response.objects.filter(
            experiment__team=team, created_at__gte=start, cost_usd__isnull=False, is_simulated=False
        )
        .values("target__endpoint_id", "target__endpoint__name")
        .annotate(cost=Sum("cost_usd"), responses=Count("id"))
        .order_by("-cost", "target__endpoint__name")
    )
    by_endpoint = [
        EndpointCost(endpoint_id=r["target__endpoint_id"], name=r["target__endpoint__name"], cost_usd=r["cost"],
                     responses=r["responses"])
        for r in rows
    ]  # fmt: skip
    total = sum(row.cost_usd for row in by_endpoint)
    budget = team.monthly_budget_usd
    if budget is None:
        percent, level = None, "none"
    else:
        percent = 100.0 * total / budget if budget > 0 else (100.0 if total > 0 else 0.0)
        level = "over" if percent >= 100 else "nearing" if percent >= BUDGET_NEARING_PERCENT else "ok"
    return MonthCost(month_start=start, by_endpoint=by_endpoint, total_usd=total, budget_usd=budget,
                     percent=None if percent is None else round(percent, 1), level=level)  # fmt: skip


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
