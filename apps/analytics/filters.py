"""The filter every analytics view takes from its query string (pages, API and exports alike)."""

from dataclasses import asdict, dataclass
from datetime import UTC, datetime, time, timedelta

from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_date

from apps.accounts.simulated import PARAM as SIMULATED_PARAM
from apps.batches.selectors import QUALITY_METRICS
from apps.experiments.models import Experiment, Response, TestCase

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
TIMEFRAMES = {"7d": 7, "30d": 30, "90d": 90}
GRANULARITIES = ("day", "week")
EXPERIMENT_TYPES = ("all", "single", "batch")


class FilterError(ValueError):
    """A bad query parameter; `field` names it."""

    def __init__(self, field: str, problem: str):
        super().__init__(f"{field}: {problem}")
        self.field, self.problem = field, problem


@dataclass(frozen=True)
class Filters:
    timeframe: str
    start: datetime
    end: datetime  # exclusive
    granularity: str
    experiment_type: str
    model: str
    tag: str
    metric: str
    include_simulated: bool = False  # simulated results (the sim provider, demo data) are left out unless True

    def describe(self) -> list[tuple[str, str]]:
        """(label, value) pairs for a report's title page and an export's summary."""
        last = (self.end - timedelta(seconds=1)).date().isoformat()
        return [
            ("Timeframe", f"{self.timeframe}: {self.start.date().isoformat()} to {last} (UTC)"),
            ("Experiment type", self.experiment_type), ("Model", self.model or "all"), ("Tag", self.tag or "all"),
            ("Quality metric", self.metric), ("Granularity", self.granularity),
            ("Simulated results", "included" if self.include_simulated else "left out"),
        ]  # fmt: skip

    def as_json(self) -> dict:
        data = asdict(self)
        data["start"], data["end"] = self.start.isoformat(), self.end.isoformat()
        return data

    def query(self) -> str:
        """The filter as a query string, for links to the same view in another format."""
        from urllib.parse import urlencode

        params = {"timeframe": self.timeframe, "granularity": self.granularity, "experiment_type": self.experiment_type,
                  "model": self.model, "tag": self.tag, "metric": self.metric,
                  SIMULATED_PARAM: "1" if self.include_simulated else "0"}  # fmt: skip
        if self.timeframe == "custom":
            params["start"] = self.start.date().isoformat()
            params["end"] = (self.end - timedelta(days=1)).date().isoformat()
        return urlencode({k: v for k, v in params.items() if v})


def _choice(params, name: str, choices, default: str) -> str:
    value = (params.get(name) or default).strip()
    if value not in choices:
        raise FilterError(name, f"one of {', '.join(choices)}, not {value!r}")
    return value


def _text(params, name: str, max_chars: int) -> str:
    value = (params.get(name) or "").strip()[:max_chars]
    if "\x00" in value:  # PostgreSQL cannot compare text holding NUL: a 500 otherwise
        raise FilterError(name, "text without NUL (\\x00) characters")
    return value


def _day(params, name: str):
    raw = (params.get(name) or "").strip()
    if not raw:
        raise FilterError(name, "a date (YYYY-MM-DD) is needed with timeframe=custom")
    try:
        day = parse_date(raw)
    except ValueError:
        day = None
    if day is None:
        raise FilterError(name, f"a date as YYYY-MM-DD, not {raw!r}")
    return day


def parse_include_simulated(params, team=None) -> bool:
    """`include_simulated=1|0|true|false|yes|no|on|off` from a query string, else the team's default
    (`Team.show_simulated`, as apps.accounts.simulated.include_simulated reads a request)."""
    raw = params.get(SIMULATED_PARAM)
    raw = (raw if isinstance(raw, str) else "" if raw is None else str(raw)).strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    if raw:
        raise FilterError(SIMULATED_PARAM, f"1 or 0 (true or false), not {raw!r}")
    return bool(team is not None and getattr(team, "show_simulated", False))


def parse_filters(params, *, team=None, now: datetime | None = None) -> Filters:
    """Filters from a query string (or a dict): timeframe 7d | 30d | 90d | custom (start, end:
    inclusive dates), granularity day | week, experiment_type all | single | batch, model, tag, metric,
    include_simulated (default: the team's `show_simulated`, False without a team)."""
    now = now or timezone.now()
    timeframe = _choice(params, "timeframe", (*TIMEFRAMES, "custom"), "30d")
    if timeframe == "custom":
        first, last = _day(params, "start"), _day(params, "end")
        if last < first:
            raise FilterError("end", "on or after start")
        if (last - first).days > 3660:
            raise FilterError("start", "a timeframe of at most ten years")
        start = datetime.combine(first, time.min, tzinfo=UTC)
        end = datetime.combine(last + timedelta(days=1), time.min, tzinfo=UTC)
    else:
        today = now.astimezone(UTC).date()
        end = datetime.combine(today + timedelta(days=1), time.min, tzinfo=UTC)
        start = end - timedelta(days=TIMEFRAMES[timeframe])
    metric = _choice(params, "metric", QUALITY_METRICS, "overall")
    model = _text(params, "model", 200)
    tag = _text(params, "tag", 100)
    return Filters(timeframe, start, end, _choice(params, "granularity", GRANULARITIES, "day"),
                   _choice(params, "experiment_type", EXPERIMENT_TYPES, "all"), model, tag, metric,
                   parse_include_simulated(params, team))  # fmt: skip


def responses(team, filters: Filters) -> QuerySet:
    """The team's responses inside the filter (failed ones included: callers count them apart); simulated
    ones only with `include_simulated`."""
    rows = Response.objects.filter(
        experiment__team=team, created_at__gte=filters.start, created_at__lt=filters.end
    ).order_by()
    if not filters.include_simulated:
        rows = rows.filter(is_simulated=False)
    if filters.experiment_type != "all":
        rows = rows.filter(experiment__kind=filters.experiment_type)
    if filters.model:
        rows = rows.filter(target__model=filters.model)
    if filters.tag:
        # Tags are JSON lists (SQLite has no JSON containment): match them in Python over the team's
        # experiments and test cases, which are few next to the responses.
        experiments = [pk for pk, tags in Experiment.objects.filter(team=team).values_list("pk", "tags")
                       if filters.tag in (tags or [])]  # fmt: skip
        cases = [pk for pk, tags in TestCase.objects.filter(team=team).values_list("pk", "tags")
                 if filters.tag in (tags or [])]  # fmt: skip
        rows = rows.filter(Q(experiment_id__in=experiments) | Q(test_case_id__in=cases))
    return rows
