"""A team's monthly budget as a hard limit (issue 17): refuse a run whose estimate exceeds what is left, stop a running
one when metered cost reaches the limit, and tell the team at 80% and 100%.

Metered spend is the `cost_usd` of every answer a run kind stores, non-simulated, since midnight UTC on the first of the
month: experiments' and parameter sweeps' responses and benchmark answers (load sweeps and capacity searches meter no
cost: their requests carry no prices). The dashboard's "Cost this month" tile reads the same rows
(month_spend_by_endpoint), so both show one figure. providers sits below the apps that store answers, so their models
are looked up by name (django.apps), never imported.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from django.apps import apps
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db.models import Count, F, Sum
from django.utils import timezone
from rest_framework.exceptions import ValidationError as DrfValidationError

from apps.accounts.models import Team
from apps.providers.engine.types import Kind

logger = logging.getLogger(__name__)

NEARING_PERCENT = 80.0

# (model, the path to its team, the path to its endpoint): every row with a cost_usd and a created_at.
METERED = (
    ("experiments.Response", "experiment__team_id", "target__endpoint"),
    ("benchmarks.BenchmarkAnswer", "run__team_id", "target__endpoint"),
)


class BudgetExceeded(ValidationError):
    """A run refused before it starts: its estimate is more than the team has left (the message gives the figures)."""


@dataclass(frozen=True)
class BudgetState:
    budget_usd: float | None  # None: no budget set
    spent_usd: float  # metered, non-simulated, since the start of the month (UTC)
    hard_limit: bool
    month_start: datetime | None = None

    @property
    def left_usd(self) -> float | None:
        return None if self.budget_usd is None else max(0.0, self.budget_usd - self.spent_usd)

    @property
    def percent(self) -> float | None:
        if self.budget_usd is None:
            return None
        if self.budget_usd <= 0:
            return 100.0 if self.spent_usd > 0 else 0.0
        return 100.0 * self.spent_usd / self.budget_usd

    @property
    def reached(self) -> bool:
        """The budget is a hard limit and metered spend has reached it."""
        return self.hard_limit and self.budget_usd is not None and self.spent_usd >= self.budget_usd

    @property
    def since(self) -> str:
        start = self.month_start or month_start_utc()
        return f"{start.day} {start:%B}"


@dataclass(frozen=True)
class EndpointSpend:
    endpoint_id: int
    name: str
    cost_usd: float
    answers: int


def month_start_utc(now: datetime | None = None) -> datetime:
    """Midnight UTC on the first day of the current calendar month."""
    now = (now or timezone.now()).astimezone(UTC)
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def month_spend_by_endpoint(team_id: int, start: datetime) -> list[EndpointSpend]:
    """Metered, non-simulated cost since `start` per endpoint, every run kind together, most expensive first (one
    query: a UNION ALL of each kind's per-endpoint sums)."""
    parts = []
    for label, team_path, endpoint_path in METERED:
        model = apps.get_model(label)
        rows = model.objects.filter(**{team_path: team_id, "created_at__gte": start, "cost_usd__isnull": False})
        if any(field.name == "is_simulated" for field in model._meta.get_fields()):
            rows = rows.filter(is_simulated=False)  # marked when stored: the simulator's answers, generated demo data
        else:
            rows = rows.exclude(**{f"{endpoint_path}__kind": Kind.SIM})
        parts.append(
            rows.order_by()
            .values(endpoint=F(f"{endpoint_path}_id"), endpoint_name=F(f"{endpoint_path}__name"))
            .annotate(cost=Sum("cost_usd"), answers=Count("pk"))
        )
    merged: dict[int, EndpointSpend] = {}
    for row in parts[0].union(*parts[1:], all=True):
        seen = merged.get(row["endpoint"])
        cost, answers = (seen.cost_usd, seen.answers) if seen else (0.0, 0)
        merged[row["endpoint"]] = EndpointSpend(row["endpoint"], row["endpoint_name"], cost + (row["cost"] or 0.0),
                                                answers + row["answers"])  # fmt: skip
    return sorted(merged.values(), key=lambda e: (-e.cost_usd, e.name))


def budget_state(team_id: int) -> BudgetState:
    """The team's monthly budget, whether it is a hard limit, and its metered spend this month (UTC)."""
    team = Team.objects.filter(pk=team_id).values("monthly_budget_usd", "monthly_budget_hard_limit").first() or {}
    start = month_start_utc()
    spent = sum(row.cost_usd for row in month_spend_by_endpoint(team_id, start))
    return BudgetState(budget_usd=team.get("monthly_budget_usd"), spent_usd=spent,
                       hard_limit=bool(team.get("monthly_budget_hard_limit")), month_start=start)  # fmt: skip


def _money(value: float) -> str:
    return f"${value:,.2f}"


def budget_check(*, team_id: int, estimate_usd: float | None, what: str) -> None:
    """Raise BudgetExceeded when the team's budget is a hard limit and `estimate_usd` is more than what is left.

    `what` names the run ("This parameter sweep"). A run without an estimate (None) is refused only when nothing is
    left; a run that meters nothing (only simulated targets) passes 0.0 and is never refused."""
    state = budget_state(team_id)
    if not state.hard_limit or state.budget_usd is None:
        return
    left = state.left_usd
    of_budget = (
        f"of the {_money(state.budget_usd)} monthly budget ({_money(state.spent_usd)} spent since {state.since})"
    )
    if estimate_usd is None and left <= 0:
        raise BudgetExceeded(f"{what} cannot start: nothing is left {of_budget}.", code="budget")
    if estimate_usd is not None and estimate_usd > 0 and estimate_usd > left:
        raise BudgetExceeded(
            f"{what} cannot start: estimated {_money(estimate_usd)}, {_money(left)} left {of_budget}.", code="budget"
        )


def stopped_reason(state: BudgetState, spent_usd: float | None = None) -> str:
    """What a run stopped by the budget says."""
    spent = state.spent_usd if spent_usd is None else spent_usd
    return (
        f"Stopped: the team's monthly budget of {_money(state.budget_usd or 0.0)} was reached ({_money(spent)} spent)."
    )


def budget_events(team_id: int, state: BudgetState | None = None) -> str | None:
    """Tell the team when this month's spend has crossed 80% (below 100%) or 100% of its budget: once per month and
    level (notify's dedupe key). The event sent (or already sent), or None. Never raises: a run must not fail for a
    notification."""
    from apps.notifications import events
    from apps.notifications.services import notify

    try:
        if state is None:
            if Team.objects.filter(pk=team_id, monthly_budget_usd__isnull=True).exists():
                return None  # no budget: nothing to tell (and no spend to add up)
            state = budget_state(team_id)
        percent = state.percent
        if percent is None or percent < NEARING_PERCENT:
            return None
        level, event = (100, events.BUDGET_100) if percent >= 100 else (80, events.BUDGET_80)
        start = state.month_start or month_start_utc()
        spent, budget = _money(state.spent_usd), _money(state.budget_usd or 0.0)
        if level == 100:
            title = "The monthly budget is spent"
            text = f"{spent} of the {budget} monthly budget is spent since {state.since} ({percent:.1f}%)."
            if state.hard_limit:
                text += " It is a hard limit: running runs stop and new ones are refused until next month."
        else:
            title = "80% of the monthly budget is spent"
            text = f"{spent} of the {budget} monthly budget is spent since {state.since} ({percent:.1f}%)."
        notify(
            team_id=team_id, event=event, title=title, text=text, url="/",  # the dashboard (notify puts SITE_URL in front)
            facts={"Monthly budget": budget, "Spent this month": spent, "Share spent": f"{percent:.1f}%",
                   "Hard limit": "yes: runs stop at the budget" if state.hard_limit else "no: a warning only"},
            dedupe_key=f"budget-{level}-{team_id}-{start:%Y-%m}",
        )  # fmt: skip
        return event
    except Exception:
        logger.exception("Budget notification for team %s failed", team_id)
        return None


class BudgetWatch:
    """A running run's view of its team's budget: metered spend re-read every BUDGET_REFRESH_S (other runs of the
    team spend too), each answer's cost added as it arrives (before it is stored). `reached` tells the runner to stop, as a cancel
    does. refresh() reads the database: call it from a worker thread in async code."""

    def __init__(self, team_id: int, *, metered: bool = True):
        self.team_id, self.metered = team_id, metered
        self.state: BudgetState | None = None
        self.spent_usd = 0.0
        self._next_refresh = 0.0

    def due(self) -> bool:
        return self.metered and time.monotonic() >= self._next_refresh

    def refresh(self) -> None:
        self._next_refresh = time.monotonic() + settings.BUDGET_REFRESH_S
        state = budget_state(self.team_id)
        same_month = self.state is not None and self.state.month_start == state.month_start
        # The database has every run's stored answers; this run's view also has its answers not stored yet.
        self.spent_usd = max(state.spent_usd, self.spent_usd) if same_month else state.spent_usd
        self.state = state
        budget_events(self.team_id, state)

    def add(self, cost_usd: float | None) -> None:
        if cost_usd:
            self.spent_usd += cost_usd

    @property
    def reached(self) -> bool:
        state = self.state
        return (self.metered and state is not None and state.hard_limit and state.budget_usd is not None
                and self.spent_usd >= state.budget_usd)  # fmt: skip

    @property
    def reason(self) -> str:
        return stopped_reason(self.state, self.spent_usd) if self.state else ""


def refusal_text(exc: BudgetExceeded) -> str:
    """The refusal's message (with its figures), for a page."""
    return " ".join(exc.messages)


@contextmanager
def budget_refusals_as_400() -> Iterator[None]:
    """In an API view: a BudgetExceeded raised inside (and any transaction.atomic inside rolled back) answers 400
    {"detail": "<the refusal with its figures>"}."""
    try:
        yield
    except BudgetExceeded as exc:
        raise DrfValidationError({"detail": refusal_text(exc)}, code="budget") from None
