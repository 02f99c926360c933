"""The capacity answer (issue 14): which deployment to buy. Three read models, the one source of their figures for
the pages, the API and the CSV / JSON / Excel / PDF files:

* latency–throughput curves: per deployment (model variant × hardware × deployment) its performance runs as points,
  achieved throughput against a p95 latency, joined in order of throughput, with an SLO line;
* throughput per GPU against interactivity (output tokens/s per user), per run, with the Pareto frontier across
  every deployment;
* cost per 1M output tokens at the SLO, from each deployment's latest completed capacity search per SLO, ranked,
  with the model variant's quality as the leaderboard computes it.

Simulated runs and searches (the built-in simulator, demo data) are left out unless `include_simulated`; each
answer says in words how many were left out. Each selector reads a fixed number of queries, however many runs.
"""

import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass, field

from django.core.cache import cache
from django.db.models import Count, Max, Q

from apps.analytics import selectors
from apps.analytics.catalog import ParameterError, Result, View
from apps.analytics.filters import FilterError, parse_filters, parse_include_simulated
from apps.analytics.presentation import SIMULATED, Column, Fact, Section, interval
from apps.capacity.engine.slo import describe_slo
from apps.capacity.models import CapacitySearch
from apps.hardware.models import PerformanceRun
from apps.hardware.selectors import Workload, grid_workloads
from apps.scores.models import Score
from apps.workloads.models import WorkloadVersion
from llmbench import svg
from llmbench.humanize import number_text

# y of the curves: key → (words, the summary's metric, its statistic)
CURVE_LATENCIES = {
    "ttft_p95_ms": ("p95 time to first token (ms)", "ttft_ms", "p95"),
    "e2e_p95_ms": ("p95 end-to-end latency (ms)", "e2e_ms", "p95"),
}
# x of the curves: key → words
CURVE_THROUGHPUTS = {
    "request_throughput_rps": "Requests per second",
    "output_tps": "Output tokens per second",
}
MAX_CURVES = 8  # deployments drawn by default (the most runs first); the form chooses others
MAX_LEGEND = 8  # deployments with their own colour on the Pareto chart; the rest share one
SLO_PERCENTILE = 95
MAX_INT = 2_147_483_647  # the runs' integer columns (PostgreSQL's integer)


# A bad query parameter (`field` names it): the catalog's, so that pages and API answer it as every analytics view.
DecisionError = ParameterError


# --- shared --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeploymentKey:
    """What is being bought: a model variant served on a hardware profile by a deployment (engine + settings)."""

    variant_id: int
    hardware_id: int | None
    deployment_id: int | None

    @property
    def key(self) -> str:
        """The URL form: v3-h2-d5 (0 for a missing hardware profile or deployment)."""
        return f"v{self.variant_id}-h{self.hardware_id or 0}-d{self.deployment_id or 0}"

    @classmethod
    def from_key(cls, key: str) -> "DeploymentKey":
        parts = key.strip().split("-")
        if len(parts) != 3 or [p[:1] for p in parts] != ["v", "h", "d"] or not all(p[1:].isdigit() for p in parts):
            raise ValueError(key)
        variant, hardware, deployment = (int(p[1:]) for p in parts)
        return cls(variant, hardware or None, deployment or None)


def deployment_label(model: str, quantization: str, hardware: str | None, deployment: str | None,
                     engine: str | None) -> str:  # fmt: skip
    """In words: "llama-8b BF16 · 2× H100 box · vllm tp2 (vllm)"."""
    model_text = " ".join(part for part in (model.split("/")[-1], quantization) if part)
    deployment_text = f"{deployment} ({engine})" if deployment and engine else deployment or "no deployment"
    return f"{model_text} · {hardware or 'no hardware'} · {deployment_text}"


def _left_out_text(count: int, what: str) -> str:
    """What the simulated switch left out, in words ("" when nothing was)."""
    if not count:
        return ""
    noun = what if count == 1 else f"{what}s"
    return (f"{count:,} simulated {noun} (built-in simulator or demo data) left out: include simulated results "
            "to see them, marked as simulated.")  # fmt: skip


@dataclass(frozen=True)
class Choice:
    value: str
    label: str


def _workload_filters(team, params, runs):
    """`workload` (a key such as c16-in256-out128) and `workload_version` (an id) of the query string applied to
    `runs`; returns the runs, the chosen workload, the chosen version and the choices for the form."""
    raw = (params.get("workload") or "").strip()
    workload = None
    if raw:
        try:
            workload = Workload.from_key(raw)
        except ValueError:
            raise DecisionError("workload", f"a workload such as c16-in256-out128, not {raw[:40]!r}") from None
        if any(v is not None and v > MAX_INT for v in (workload.concurrency, workload.input_tokens,
                                                       workload.output_tokens)):  # fmt: skip
            raise DecisionError("workload", "numbers that fit the runs' columns (at most 2,147,483,647)")
        runs = workload.filter(runs)
    raw_version = (params.get("workload_version") or "").strip()
    version = None
    if raw_version:
        if not raw_version.isdigit() or len(raw_version) > 18:
            raise DecisionError("workload_version", f"the number of a workload version, not {raw_version[:40]!r}")
        version = (WorkloadVersion.objects.filter(pk=int(raw_version), workload__team=team)
                   .select_related("workload").first())  # fmt: skip
        if version is None:
            raise DecisionError("workload_version", "no such workload version in this team")
        runs = runs.filter(workload_version=version)
    return runs, workload, version


def _workload_choices(runs) -> tuple[list[Choice], list[Choice]]:
    """The form's workloads (most runs first) and workload versions among `runs` (before those filters)."""
    workloads = [Choice(w.key, f"{w.label} ({n:,} runs)") for w, n in grid_workloads(runs)]
    versions = (runs.filter(workload_version__isnull=False).order_by()
                .values_list("workload_version_id", "workload_version__workload__name", "workload_version__number")
                .annotate(n=Count("pk")))  # fmt: skip
    return workloads, [Choice(str(pk), f"{name} v{number} ({n:,} runs)") for pk, name, number, n in
                       sorted(versions, key=lambda row: (row[1].lower(), row[2]))]  # fmt: skip


def _team_runs(team):
    return PerformanceRun.objects.filter(team=team, summary__isnull=False).order_by()


RUN_FIELDS = (
    "pk", "name", "variant_id", "variant__model_name", "variant__quantization", "hardware_id", "hardware__name",
    "hardware__accelerator_count", "deployment_id", "deployment__name", "deployment__engine", "is_simulated",
    "summary__request_throughput_rps", "summary__output_token_throughput_tps", "summary__metrics__ttft_ms__p95",
    "summary__metrics__e2e_ms__p95", "summary__metrics__tpot_ms__p50",
)  # fmt: skip


@dataclass(frozen=True)
class _RunRow:
    run_id: int
    run: str
    key: DeploymentKey
    deployment: str
    gpus: int | None
    simulated: bool
    request_throughput_rps: float | None
    output_tps: float | None
    ttft_p95_ms: float | None
    e2e_p95_ms: float | None
    tpot_p50_ms: float | None


def plain(value):
    """Dataclasses as dicts, lists and tuples as lists, the rest as it is: dataclasses.asdict deep-copies every
    value, three times slower on 500 runs."""
    if hasattr(value, "__dataclass_fields__"):
        return {name: plain(item) for name, item in vars(value).items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    return value


def _number(value) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _run_rows(runs) -> list[_RunRow]:
    """Plain values of the runs and their summaries, in one query (the figures read out of the JSON by the database)."""
    out, labels = [], {}
    for row in runs.values_list(*RUN_FIELDS):
        (pk, name, variant_id, model, quantization, hardware_id, hardware, gpus, deployment_id, deployment, engine,
         simulated, rps, tps, ttft, e2e, tpot) = row  # fmt: skip
        out.append(_RunRow(
            pk, name or f"Run #{pk}", DeploymentKey(variant_id, hardware_id, deployment_id),
            labels.get(row[2:11]) or labels.setdefault(row[2:11], deployment_label(model, quantization, hardware,
                                                                                   deployment, engine)),
            gpus, simulated,
            _number(rps), _number(tps), _number(ttft), _number(e2e), _number(tpot),
        ))  # fmt: skip
    return out


# --- latency–throughput curves -------------------------------------------------------------------


@dataclass(frozen=True)
class CurvePoint:
    run_id: int
    run: str
    throughput: float
    latency_ms: float
    within_slo: bool | None  # None without an SLO line
    simulated: bool


@dataclass(frozen=True)
class Curve:
    key: str
    deployment: str
    points: list[CurvePoint]  # in order of throughput

    @property
    def simulated(self) -> bool:
        return any(p.simulated for p in self.points)

    @property
    def best_throughput_within_slo(self) -> float | None:
        """The highest throughput of a run within the SLO (None without an SLO or such a run)."""
        met = [p.throughput for p in self.points if p.within_slo]
        return max(met) if met else None


@dataclass(frozen=True)
class SloLine:
    max_ms: float
    source: str  # "entered" or "capacity search"
    search_id: int | None = None
    search: str = ""
    description: str = ""  # the whole SLO in words, for a search's


@dataclass(frozen=True)
class Curves:
    throughput: str  # a CURVE_THROUGHPUTS key
    latency: str  # a CURVE_LATENCIES key
    slo: SloLine | None
    workload: str  # in words; "" for every workload
    include_simulated: bool
    left_out: str  # simulated runs left out, in words
    curves: list[Curve]  # those drawn
    deployments: list[Choice]  # every deployment with runs (for the form), the most runs first
    chosen: list[str]  # keys drawn
    missing_figures: int  # runs of the drawn deployments without the chosen figures
    workloads: list[Choice] = field(default_factory=list)
    workload_versions: list[Choice] = field(default_factory=list)
    searches: list[Choice] = field(default_factory=list)

    @property
    def throughput_label(self) -> str:
        return CURVE_THROUGHPUTS[self.throughput]

    @property
    def latency_label(self) -> str:
        return CURVE_LATENCIES[self.latency][0]

    def as_dict(self) -> dict:
        data = plain(self)
        for curve, out in zip(self.curves, data["curves"], strict=True):
            out["simulated"] = curve.simulated
            out["best_throughput_within_slo"] = curve.best_throughput_within_slo
        data["throughput_label"], data["latency_label"] = self.throughput_label, self.latency_label
        return data


def _choice(params, name: str, choices) -> str:
    value = (params.get(name) or next(iter(choices))).strip()
    if value not in choices:
        raise DecisionError(name, f"one of {', '.join(choices)}, not {value[:40]!r}")
    return value


def _positive_ms(params, name: str) -> float | None:
    raw = (params.get(name) or "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise DecisionError(name, f"a number of milliseconds, not {raw[:40]!r}") from None
    if not 0 < value <= 3_600_000:
        raise DecisionError(name, "a number of milliseconds above 0 (at most an hour)")
    return value


def _searches(team, include_simulated: bool):
    searches = CapacitySearch.objects.filter(team=team, status="completed")
    return searches if include_simulated else searches.filter(is_simulated=False)


def _slo_line(team, params, latency: str, include_simulated: bool) -> SloLine | None:
    """The SLO line: the threshold entered (`slo_ms`) wins; else the chosen capacity search's objective on the
    chosen p95 latency (`search`)."""
    entered = _positive_ms(params, "slo_ms")
    if entered is not None:
        return SloLine(entered, "entered")
    raw = (params.get("search") or "").strip()
    if not raw:
        return None
    if not raw.isdigit() or len(raw) > 18:  # a bigger number overflows the id column: a 500 otherwise
        raise DecisionError("search", f"the number of a capacity search, not {raw[:40]!r}")
    search = _searches(team, include_simulated).filter(pk=int(raw)).first()
    if search is None:
        raise DecisionError("search", "no completed capacity search of that number in this team"
                            + ("" if include_simulated else " (simulated searches are left out)"))  # fmt: skip
    label, metric, _ = CURVE_LATENCIES[latency]
    objectives = (search.slo or {}).get("objectives") or []
    matching = [o for o in objectives if o.get("metric") == metric and o.get("percentile") == SLO_PERCENTILE]
    if not matching or _number(matching[0].get("max_ms")) is None:
        raise DecisionError("search", f"its SLO sets no limit on the {label[:-5]}: choose the other latency, "
                            "another search, or enter a threshold")  # fmt: skip
    return SloLine(float(matching[0]["max_ms"]), "capacity search", search.pk, search.name, _slo_text(search.slo))


def _slo_text(slo) -> str:
    try:
        return describe_slo(slo or {})
    except (KeyError, TypeError, ValueError):  # an SLO stored by hand in another shape: shown as stored
        return json.dumps(slo, sort_keys=True)


def _search_choices(team, include_simulated: bool) -> list[Choice]:
    rows = _searches(team, include_simulated).values_list("pk", "name", "slo")[:200]
    return [Choice(str(pk), f"{name} ({_slo_text(slo)})") for pk, name, slo in rows]


def decision_curves(team, params) -> Curves:
    """Per deployment its runs as (throughput, p95 latency) points in order of throughput, with the SLO line.
    Parameters: x (request_throughput_rps | output_tps), y (ttft_p95_ms | e2e_p95_ms), slo_ms or search,
    deployments (comma-separated keys; default the MAX_CURVES with most runs), workload, workload_version,
    include_simulated (default the team's)."""
    include_simulated = _include_simulated(params, team)
    throughput = _choice(params, "x", CURVE_THROUGHPUTS)
    latency = _choice(params, "y", CURVE_LATENCIES)
    slo = _slo_line(team, params, latency, include_simulated)
    all_runs = _team_runs(team)
    shown = all_runs if include_simulated else all_runs.filter(is_simulated=False)
    workloads, versions = _workload_choices(shown)
    runs, workload, version = _workload_filters(team, params, shown)
    # The deployments and their numbers of runs first (for the form); then the runs of those drawn only.
    counts = (runs.order_by().values_list("variant_id", "hardware_id", "deployment_id", *RUN_FIELDS[3:5],
                                          RUN_FIELDS[6], *RUN_FIELDS[9:11]).annotate(n=Count("pk")))  # fmt: skip
    per_key = {
        DeploymentKey(*row[:3]): (deployment_label(*row[3:8]), row[8]) for row in counts
    }  # label, number of runs
    order = sorted(per_key, key=lambda k: (-per_key[k][1], per_key[k][0]))
    available = [Choice(k.key, f"{per_key[k][0]} ({per_key[k][1]:,} runs)") for k in order]
    raw = ",".join(params.getlist("deployments") if hasattr(params, "getlist") else [params.get("deployments") or ""])
    if raw.replace(",", "").strip():
        try:
            chosen = list(dict.fromkeys(DeploymentKey.from_key(part) for part in raw.split(",") if part.strip()))
        except ValueError:
            raise DecisionError("deployments", "keys such as v3-h2-d5, separated by commas") from None
        unknown = [k.key for k in chosen if k not in per_key]
        if unknown:
            raise DecisionError("deployments", f"no runs of {', '.join(unknown[:5])} in this filter")
    else:
        chosen = order[:MAX_CURVES]
    of_chosen = Q(pk__in=[])
    for key in chosen:
        of_chosen |= Q(variant_id=key.variant_id, hardware_id=key.hardware_id, deployment_id=key.deployment_id)
    per_chosen: dict[DeploymentKey, list[_RunRow]] = defaultdict(list)
    for row in _run_rows(runs.filter(of_chosen)) if chosen else []:
        per_chosen[row.key].append(row)

    curves, missing = [], 0
    y_of = {"ttft_p95_ms": lambda r: r.ttft_p95_ms, "e2e_p95_ms": lambda r: r.e2e_p95_ms}[latency]
    x_of = {"request_throughput_rps": lambda r: r.request_throughput_rps, "output_tps": lambda r: r.output_tps}[
        throughput
    ]
    for key in chosen:
        points = []
        for row in per_chosen[key]:
            x, y = x_of(row), y_of(row)
            if x is None or y is None:
                missing += 1
                continue
            points.append(CurvePoint(row.run_id, row.run, x, y, None if slo is None else y <= slo.max_ms,
                                     row.simulated))  # fmt: skip
        points.sort(key=lambda p: (p.throughput, p.latency_ms, p.run_id))
        curves.append(Curve(key.key, per_key[key][0], points))
    left_out = 0 if include_simulated else all_runs.filter(is_simulated=True).count()
    return Curves(
        throughput, latency, slo, _workload_words(workload, version), include_simulated,
        _left_out_text(left_out, "run"), curves, available, [k.key for k in chosen], missing,
        workloads, versions, _search_choices(team, include_simulated),
    )  # fmt: skip


def _include_simulated(params, team) -> bool:
    try:
        return parse_include_simulated(params, team)
    except FilterError as exc:
        raise DecisionError(exc.field, exc.problem) from None


def _workload_words(workload: Workload | None, version) -> str:
    parts = []
    if workload is not None:
        parts.append(workload.label)
    if version is not None:
        parts.append(f"workload {version.workload.name} v{version.number}")
    return "; ".join(parts)


# --- throughput per GPU against interactivity ----------------------------------------------------


def pareto_frontier(points: list[tuple[float, float]]) -> list[bool]:
    """Which points (x, y), both higher-is-better, no other point dominates: no other point is at least as high on
    both axes and strictly higher on one. Equal points do not dominate each other, so both stay on the frontier.
    O(n log n): the highest x first, a point survives when its y beats every y of a strictly higher x and it is
    the highest y of its own x."""
    order = sorted(range(len(points)), key=lambda i: (-points[i][0], -points[i][1]))
    front = [False] * len(points)
    best_y = float("-inf")  # the highest y of the points with a strictly higher x than the current group
    i = 0
    while i < len(order):
        x = points[order[i]][0]
        group = [order[i]]
        while i + 1 < len(order) and points[order[i + 1]][0] == x:
            i += 1
            group.append(order[i])
        top = points[group[0]][1]  # sorted: the first of the group has its highest y
        for j in group:
            front[j] = points[j][1] == top and top > best_y
        best_y = max(best_y, top)
        i += 1
    return front


@dataclass(frozen=True)
class ParetoPoint:
    run_id: int
    run: str
    key: str
    deployment: str
    gpus: int
    output_tps: float
    output_tps_per_gpu: float
    tpot_p50_ms: float
    output_tps_per_user: float  # interactivity: 1000 / median TPOT (ms)
    on_frontier: bool
    simulated: bool


@dataclass(frozen=True)
class Pareto:
    workload: str
    include_simulated: bool
    left_out: str
    points: list[ParetoPoint]  # every run with both figures, the frontier's first
    missing_figures: int  # runs without hardware, output throughput or median TPOT
    workloads: list[Choice] = field(default_factory=list)
    workload_versions: list[Choice] = field(default_factory=list)

    @property
    def frontier(self) -> list[ParetoPoint]:
        """The frontier from the most interactive point to the highest throughput per GPU."""
        return sorted((p for p in self.points if p.on_frontier), key=lambda p: (p.output_tps_per_user, p.run_id))

    def as_dict(self) -> dict:
        data = plain(self)
        data["frontier"] = plain(self.frontier)
        return data


def decision_pareto(team, params) -> Pareto:
    """Per run: output tokens/s ÷ the hardware's accelerators against output tokens/s per user (1000 / median TPOT),
    and the Pareto frontier across every deployment. Parameters: workload, workload_version, include_simulated."""
    include_simulated = _include_simulated(params, team)
    all_runs = _team_runs(team)
    shown = all_runs if include_simulated else all_runs.filter(is_simulated=False)
    workloads, versions = _workload_choices(shown)
    runs, workload, version = _workload_filters(team, params, shown)
    usable, missing = [], 0
    for row in _run_rows(runs):
        if not row.gpus or not row.output_tps or not row.tpot_p50_ms or row.tpot_p50_ms <= 0:
            missing += 1
            continue
        usable.append(row)
    front = pareto_frontier([(1000.0 / r.tpot_p50_ms, r.output_tps / r.gpus) for r in usable])
    points = [
        ParetoPoint(r.run_id, r.run, r.key.key, r.deployment, r.gpus, r.output_tps, r.output_tps / r.gpus,
                    r.tpot_p50_ms, 1000.0 / r.tpot_p50_ms, on, r.simulated)
        for r, on in zip(usable, front, strict=True)
    ]  # fmt: skip
    points.sort(key=lambda p: (not p.on_frontier, -p.output_tps_per_gpu, p.run_id))
    left_out = 0 if include_simulated else all_runs.filter(is_simulated=True).count()
    return Pareto(_workload_words(workload, version), include_simulated, _left_out_text(left_out, "run"), points,
                  missing, workloads, versions)  # fmt: skip


# --- cost per 1M output tokens at the SLO --------------------------------------------------------


@dataclass(frozen=True)
class CostRow:
    rank: int | None  # None without a cost
    search_id: int
    search: str
    key: str
    deployment: str
    variant_id: int
    model: str
    quantization: str
    hardware: str
    gpus: int | None
    engine: str
    slo: str  # in words
    capacity: float | None
    capacity_unit: str
    capacity_low: float | None
    capacity_high: float | None
    capacity_rps: float | None
    output_tps: float | None
    output_tps_per_gpu: float | None
    output_tps_per_user: float | None
    cost_per_1m_output_usd: float | None
    quality_pct: float | None  # the leaderboard's: benchmark score, else own test-case quality
    finished_at: str | None
    simulated: bool


@dataclass(frozen=True)
class CostRanking:
    include_simulated: bool
    left_out: str
    rows: list[CostRow]  # the cheapest first; rows without a cost last
    superseded: int  # older searches of the same deployment and SLO, not shown

    def as_dict(self) -> dict:
        return plain(self)


SEARCH_FIELDS = (
    "pk", "name", "variant_id", "variant__model_name", "variant__quantization", "hardware_id", "hardware__name",
    "hardware__accelerator_count", "deployment_id", "deployment__name", "deployment__engine", "slo", "space",
    "capacity", "capacity_low", "capacity_high", "capacity_rps", "output_tps", "output_tps_per_gpu",
    "output_tps_per_user", "cost_per_1m_output_usd", "is_simulated", "finished_at",
)  # fmt: skip


def variant_quality(team, params, include_simulated: bool) -> dict[int, float]:
    """Each model variant's quality (percent) as the leaderboard computes it: its benchmark scores' mean (measured here
    where measured, else imported), else its own test-case quality over the filter's timeframe (default 30 days)."""
    filters = parse_filters({**{k: params.get(k) for k in ("timeframe", "start", "end") if params.get(k)},
                             "include_simulated": "1" if include_simulated else "0"}, team=team)  # fmt: skip
    rows = selectors.leaderboard(team, filters, selectors.parse_weights(None))["rows"]
    return {row["variant_id"]: row["quality"] for row in rows if row["quality"] is not None}


def decision_cost(team, params) -> CostRanking:
    """The latest completed capacity search per deployment (variant × hardware × deployment) and SLO, ranked by
    cost per 1M output tokens at the SLO, with the model variant's quality. Parameters: include_simulated,
    timeframe / start / end (of the own test-case quality, as on the leaderboard)."""
    include_simulated = _include_simulated(params, team)
    try:
        quality = variant_quality(team, params, include_simulated)
    except FilterError as exc:
        raise DecisionError(exc.field, exc.problem) from None
    searches = _searches(team, include_simulated).order_by("-finished_at", "-created_at", "-pk")
    latest, superseded = {}, 0
    for row in searches.values_list(*SEARCH_FIELDS):
        item = dict(zip(SEARCH_FIELDS, row, strict=True))
        key = DeploymentKey(item["variant_id"], item["hardware_id"], item["deployment_id"])
        slo_key = json.dumps(item["slo"], sort_keys=True)
        if (key, slo_key) in latest:
            superseded += 1
            continue
        latest[(key, slo_key)] = (key, item)
    rows = []
    for key, s in latest.values():
        unit = "req/s" if s["space"] == CapacitySearch.Space.RATE else "concurrent requests"
        rows.append(dict(
            rank=None, search_id=s["pk"], search=s["name"], key=key.key,
            deployment=deployment_label(s["variant__model_name"], s["variant__quantization"], s["hardware__name"],
                                        s["deployment__name"], s["deployment__engine"]),
            variant_id=s["variant_id"], model=s["variant__model_name"], quantization=s["variant__quantization"],
            hardware=s["hardware__name"] or "", gpus=s["hardware__accelerator_count"],
            engine=s["deployment__engine"] or "", slo=_slo_text(s["slo"]), capacity=s["capacity"],
            capacity_unit=unit, capacity_low=s["capacity_low"], capacity_high=s["capacity_high"],
            capacity_rps=s["capacity_rps"], output_tps=s["output_tps"], output_tps_per_gpu=s["output_tps_per_gpu"],
            output_tps_per_user=s["output_tps_per_user"], cost_per_1m_output_usd=s["cost_per_1m_output_usd"],
            quality_pct=quality.get(s["variant_id"]),
            finished_at=s["finished_at"].isoformat() if s["finished_at"] else None, simulated=s["is_simulated"],
        ))  # fmt: skip
    rows.sort(key=lambda r: (r["cost_per_1m_output_usd"] is None, r["cost_per_1m_output_usd"] or 0, r["deployment"],
                             r["slo"], r["search_id"]))  # fmt: skip
    rank = 0
    for row in rows:
        if row["cost_per_1m_output_usd"] is not None:
            rank += 1
            row["rank"] = rank
    left_out = 0 if include_simulated else CapacitySearch.objects.filter(
        team=team, status="completed", is_simulated=True).count()  # fmt: skip
    return CostRanking(include_simulated, _left_out_text(left_out, "capacity search"),
                       [CostRow(**row) for row in rows], superseded)  # fmt: skip


# --- as the pages and files show them --------------------------------------------------------------
# The catalog's Result / Section / Fact: figures rounded once to the page's precision; the files write those
# numbers, the page and the PDF the same numbers in words (apps.analytics.presentation).


def _run_link_columns() -> list[Column]:
    return [Column("deployment", "Deployment", "text"), Column("run", "Run", "text"),
            Column("run_id", "Run number", "count", secondary=True)]  # fmt: skip


def _dots(points: list[tuple[float, float]]) -> list[tuple[float, float | None]]:
    """Points a line chart draws as separate dots: a gap (no y) after each breaks the line between them."""
    return [item for x, y in points for item in ((x, y), (x, None))]


def _curves_compute(team, params):
    curves = decision_curves(team, params)
    shown = [("Throughput", curves.throughput_label), ("Latency", curves.latency_label),
             ("SLO line", _slo_words(curves.slo)), ("Workload", curves.workload or "every workload"),
             ("Simulated results", "included" if curves.include_simulated else "left out")]  # fmt: skip
    return curves, shown


def _slo_words(slo: SloLine | None) -> str:
    if slo is None:
        return "none (enter a threshold or choose a capacity search)"
    if slo.source == "entered":
        return f"{number_text(slo.max_ms)} ms (entered)"
    return f"{number_text(slo.max_ms)} ms, from capacity search {slo.search!r}: {slo.description}"


def _curves_present(result: Result) -> None:
    curves: Curves = result.data
    x_key, y_key = curves.throughput, curves.latency
    points = Section(
        "points", "Runs on the curves",
        f"At which {curves.throughput_label.lower()} does each deployment still meet the SLO?",
        [*_run_link_columns()[:2], Column(x_key, curves.throughput_label), Column(y_key, curves.latency_label),
         Column("within_slo", "Within the SLO", "bool"), _run_link_columns()[2]],
        [{"deployment": c.deployment, "run": p.run, "run_id": p.run_id, x_key: p.throughput, y_key: p.latency_ms,
          "within_slo": p.within_slo, SIMULATED: p.simulated} for c in curves.curves for p in c.points],
        empty="No runs with these figures: import or run performance runs, or choose another workload.",
    )  # fmt: skip
    best_label = f"Highest {curves.throughput_label.lower()} within the SLO"
    per_deployment = Section(
        "deployments", "Deployments", "Which deployment serves the most within the SLO?",
        [Column("deployment", "Deployment", "text"), Column("runs", "Runs", "count"),
         Column("best_within_slo", best_label, page=curves.slo is not None, file=curves.slo is not None),
         Column("lowest_latency_ms", f"Lowest {curves.latency_label}"), Column("key", "Key", "text", secondary=True)],
        [{"deployment": c.deployment, "runs": len(c.points), "best_within_slo": c.best_throughput_within_slo,
          "lowest_latency_ms": min((p.latency_ms for p in c.points), default=None), "key": c.key,
          SIMULATED: c.simulated} for c in curves.curves],
        empty="No deployment has runs in this filter.",
    )  # fmt: skip
    result.sections = [points, per_deployment]  # the CSV is the first: every point
    result.summary = [
        Fact("Deployments drawn", len(curves.curves), "count"),
        Fact("Deployments with runs", len(curves.deployments), "count"),
        Fact("Runs drawn", len(points.rows), "count"),
        Fact("SLO line", _slo_words(curves.slo), "text"),
        Fact("Runs without the figures", curves.missing_figures, "count"),
    ]  # fmt: skip
    # The chart draws the rounded figures of the table, so that it never disagrees with it.
    series, start = [], 0
    for curve in curves.curves:  # the points section holds each curve's points in turn
        rows = points.rows[start : start + len(curve.points)]
        start += len(curve.points)
        series.append(svg.Series(curve.deployment, [(r[x_key], r[y_key]) for r in rows]))
    xs = [r[x_key] for r in points.rows if r[x_key] is not None]
    if curves.slo is not None and xs:
        series.append(svg.Series(f"SLO {number_text(curves.slo.max_ms)} ms",
                                 [(min(xs), curves.slo.max_ms), (max(xs), curves.slo.max_ms)]))  # fmt: skip
    caption = f"{curves.latency_label} against {curves.throughput_label.lower()}, per deployment"
    result.charts = [(caption, svg.line_chart(series, height=340, x_label=curves.throughput_label,
                                              y_label=curves.latency_label))]  # fmt: skip


def _pareto_compute(team, params):
    pareto = decision_pareto(team, params)
    shown = [("Workload", pareto.workload or "every workload"),
             ("Simulated results", "included" if pareto.include_simulated else "left out")]  # fmt: skip
    return pareto, shown


PER_USER = "Output tokens per second per user"
PER_GPU = "Output tokens per second per GPU"


def _pareto_columns(*, frontier_column: bool) -> list[Column]:
    columns = [
        *_run_link_columns()[:2],
        Column("output_tps_per_user", PER_USER),
        Column("output_tps_per_gpu", PER_GPU),
        Column("gpus", "GPUs", "count"),
        Column("output_tps", "Output tokens per second"),
        Column("tpot_p50_ms", "Median time per output token (ms)", secondary=True),
        _run_link_columns()[2],
    ]
    if frontier_column:
        columns.insert(4, Column("on_frontier", "On the frontier", "bool"))
    return columns  # fmt: skip


def _pareto_row(p: ParetoPoint) -> dict:
    return {"deployment": p.deployment, "run": p.run, "run_id": p.run_id, "output_tps_per_user": p.output_tps_per_user,
            "output_tps_per_gpu": p.output_tps_per_gpu, "gpus": p.gpus, "output_tps": p.output_tps,
            "tpot_p50_ms": p.tpot_p50_ms, "on_frontier": p.on_frontier, SIMULATED: p.simulated}  # fmt: skip


def _pareto_present(result: Result) -> None:
    pareto: Pareto = result.data
    frontier = Section(
        "frontier", "The Pareto frontier",
        "Which runs give the most throughput per GPU for the interactivity each user gets?",
        _pareto_columns(frontier_column=False), [_pareto_row(p) for p in pareto.frontier],
        empty="No run has output throughput, a median time per output token and hardware with GPUs.",
    )  # fmt: skip
    runs = Section("runs", "Every run", "Where does each run sit against the frontier?",
                   _pareto_columns(frontier_column=True), [_pareto_row(p) for p in pareto.points],
                   empty=frontier.empty)  # fmt: skip
    result.sections = [frontier, runs]
    result.summary = [
        Fact("Runs plotted", len(pareto.points), "count"),
        Fact("On the frontier", len(frontier.rows), "count"),
        Fact("Deployments", len({p.key for p in pareto.points}), "count"),
        Fact("Runs without the figures", pareto.missing_figures, "count"),
    ]  # fmt: skip
    # One colour per deployment (those on the frontier first, then the most runs), the rest in one grey series.
    per_key = defaultdict(list)
    for p, row in zip(pareto.points, runs.rows, strict=True):
        per_key[(p.key, p.deployment)].append((row["output_tps_per_user"], row["output_tps_per_gpu"]))
    frontier_keys = {(p.key, p.deployment) for p in pareto.frontier}
    order = sorted(per_key, key=lambda k: (k not in frontier_keys, -len(per_key[k]), k[1]))
    series = [svg.Series(k[1], _dots(per_key[k])) for k in order[:MAX_LEGEND]]
    rest = [point for k in order[MAX_LEGEND:] for point in per_key[k]]
    if rest:
        series.append(svg.Series(f"{len(order) - MAX_LEGEND} other deployments", _dots(rest)))
    if frontier.rows:
        series.append(svg.Series("Pareto frontier", [(r["output_tps_per_user"], r["output_tps_per_gpu"])
                                                      for r in frontier.rows]))  # fmt: skip
    caption = "Throughput per GPU against interactivity per run, with the Pareto frontier"
    result.charts = [(caption, svg.line_chart(series, height=360, x_label=PER_USER, y_label=PER_GPU))]


def _cost_compute(team, params):
    ranking = decision_cost(team, params)
    return ranking, [("Simulated results", "included" if ranking.include_simulated else "left out")]


COST_LABEL = "Cost per 1M output tokens (USD)"


def _cost_present(result: Result) -> None:
    ranking: CostRanking = result.data
    section = Section(
        "ranking", "Ranking by cost at the SLO",
        "Which deployment serves a million output tokens most cheaply while meeting its SLO, and at what quality?",
        [Column("rank", "Rank", "count"), Column("deployment", "Deployment", "text"),
         Column("slo", "SLO", "text", long=True), Column("cost_per_1m_output_usd", COST_LABEL, digits=2),
         Column("quality_pct", "Quality (%)", digits=1), Column("capacity_rps", "Requests per second at the SLO"),
         Column("output_tps", "Output tokens per second"),
         Column("output_tps_per_gpu", "Output tokens per second per GPU"),
         Column("output_tps_per_user", "Output tokens per second per user"),
         Column("capacity", "Capacity", "amount", unit_key="capacity_unit", secondary=True),
         Column("capacity_unit", "Capacity unit", "text", page=False),
         interval("Capacity bracket (passed–failed)", low="capacity_low", high="capacity_high", secondary=True),
         Column("capacity_low", "Highest level that met the SLO", page=False),
         Column("capacity_high", "Lowest level that missed the SLO", page=False),
         Column("search", "Capacity search", "text", secondary=True),
         Column("search_id", "Search number", "count", secondary=True),
         Column("finished_at", "Finished", "date", secondary=True)],
        [{**plain(row), SIMULATED: row.simulated} for row in ranking.rows],
        empty="No completed capacity search yet: run one from a deployment's capacity page.",
    )  # fmt: skip
    result.sections = [section]
    costs = [r["cost_per_1m_output_usd"] for r in section.rows if r["cost_per_1m_output_usd"] is not None]
    result.summary = [
        Fact("Deployments and SLOs ranked", len(costs), "count"),
        Fact("Lowest cost per 1M output tokens (USD)", min(costs) if costs else None, digits=2),
        Fact("Without a cost", len(section.rows) - len(costs), "count"),
        Fact("Older searches not shown", ranking.superseded, "count"),
    ]  # fmt: skip
    bars = [svg.Bar(f"{r['rank']}. {r['deployment']}", r["cost_per_1m_output_usd"]) for r in section.rows[:20]
            if r["cost_per_1m_output_usd"] is not None]  # fmt: skip
    result.charts = [
        (
            "Cost per 1M output tokens at the SLO (USD), cheapest first",
            svg.bar_chart(bars, height=max(160, 26 * len(bars) + 60), y_label="USD", horizontal=True),
        )
    ]


METHODS_SIMULATED = ("Simulated results", "Runs and searches of the built-in simulator or demo data are left out "
                     "unless \"Include simulated results\" is ticked; the page says how many were left out.")  # fmt: skip
DECISION_VIEWS = {
    v.slug: v
    for v in (
        View("decision-curves", "Latency against throughput",
             "Per deployment (model variant × hardware × deployment), its runs from the lightest load to the heaviest: "
             "how latency grows with throughput, against an SLO line.", _curves_compute, _curves_present,
             (("Points", "One per performance run: its achieved requests per second (or output tokens per second) "
               "and its p95 time to first token (or end-to-end latency), failed requests left out, as its summary "
               "stores them; joined in order of throughput."),
              ("SLO line", "The threshold entered, else the chosen capacity search's p95 objective on that latency."),
              METHODS_SIMULATED)),
        View("decision-pareto", "Throughput per GPU against interactivity",
             "Per run, output tokens per second per GPU against output tokens per second per user, with the Pareto "
             "frontier across every deployment, hardware, quantization and engine.", _pareto_compute, _pareto_present,
             (("Throughput per GPU", "The run's output tokens per second ÷ its hardware profile's accelerator count."),
              ("Interactivity", "Output tokens per second per user: 1000 ÷ the run's median time per output token "
               "(ms)."),
              ("Pareto frontier", "Runs no other run matches or beats on both axes while beating them on one; two "
               "runs with the same figures are both on it."), METHODS_SIMULATED)),
        View("decision-cost", "Cost at the SLO",
             "Per deployment and SLO, the latest completed capacity search's cost per 1M output tokens at its "
             "capacity, cheapest first, with the model's quality beside it.", _cost_compute, _cost_present,
             (("Cost", "Hourly hardware cost ÷ (output tokens per second at capacity × 3600) × 10⁶, as the capacity "
               "search stored it."),
              ("Latest", "Per model variant × hardware × deployment and SLO, the search that finished last."),
              ("Quality", "As on the leaderboard: the mean of the variant's benchmark scores (percent; a score "
               "measured here replaces an imported one), else its own test-case quality over the last 30 days."),
              METHODS_SIMULATED)),
    )
}  # fmt: skip
KINDS = {"curves": "decision-curves", "pareto": "decision-pareto", "cost": "decision-cost"}


SELECTORS = {"curves": decision_curves, "pareto": decision_pareto, "cost": decision_cost}


# The views read every run (or search) of the team: most of a page's CPU. Their results are cached per team, view and
# query under a version read in three cheap aggregates, so a run stored, a summary recomputed, a search finished or
# a score imported by any process changes the key at once; what the version cannot see (a hardware profile or a
# model renamed, test-case quality of the last 30 days) shows within DECISION_TTL_S, as on the dashboard.
DECISION_TTL_S = 60


def decision_version(team) -> str:
    """What a cached decision view was computed from."""
    runs = PerformanceRun.objects.filter(team=team).aggregate(
        n=Count("id"), last=Max("id"), simulated=Count("id", filter=Q(is_simulated=True)),
        computed=Max("summary__computed_at"),
    )  # fmt: skip
    searches = CapacitySearch.objects.filter(team=team).aggregate(
        n=Count("id"), last=Max("id"), done=Max("finished_at")
    )
    scores = Score.objects.filter(team=team).aggregate(n=Count("id"), last=Max("id"), updated=Max("updated_at"))
    return repr((team.show_simulated, sorted(runs.items()), sorted(searches.items()), sorted(scores.items())))


def cached(kind: str, what: str, team, params, compute):
    """`compute()` once per team, view, query and data version (decision_version), for DECISION_TTL_S."""
    query = sorted((k, tuple(params.getlist(k))) for k in params)
    digest = hashlib.sha256(repr((query, decision_version(team))).encode()).hexdigest()[:32]
    key = f"decision:v1:{what}:{kind}:team{team.pk}:{digest}"
    found = cache.get(key)
    if found is None:
        found = compute()
        cache.set(key, found, DECISION_TTL_S)
    return found


def decision_data(kind: str, team, params) -> dict:
    """The API's answer of `kind`: the selector's figures, unrounded (the API reads no table, chart or words)."""
    return cached(kind, "data", team, params, lambda: SELECTORS[kind](team, params).as_dict())


def decision_result(kind: str, team, params) -> Result:
    """The view of `kind` (curves, pareto, cost) computed and presented; ParameterError for a bad parameter (never
    cached: it is raised before anything is stored)."""
    return cached(kind, "result", team, params, lambda: DECISION_VIEWS[KINDS[kind]].run(team, params))
