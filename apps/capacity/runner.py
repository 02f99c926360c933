"""Runs a capacity search in the worker: asks engine.search for the next probe, runs it as a step of the
search's load sweep (apps.batches.runner: the same load generator, workload, shards and server-metrics
scraping as any load step), and judges it in the transaction that stores its run, so a probe is either stored
and judged or not there at all. Safe to run again: a resumed search recomputes the next probe from the judged
ones, which is the probe it lost (its half-run step, with no run, is reused).
"""

import math
import time
import uuid
from functools import partial

import numpy as np
from django.conf import settings
from django.utils import timezone
from scipy import stats

from apps.batches.models import LoadSweep, LoadSweepStep
from apps.batches.runner import prepare_workload, run_and_store_step
from apps.capacity.engine import search as engine
from apps.capacity.engine.judge import Tally, goodput_share, judge, min_requests, tally
from apps.capacity.engine.saturation import saturation_signals
from apps.capacity.models import CapacityProbe, CapacitySearch, Status
from apps.capacity.services import max_probe_s, stall_after
from apps.hardware.models import RunSummary
from apps.hardware.selectors import cost_per_1m_output_usd
from apps.hardware.services import run_columns
from apps.jobs.services import job_submit
from apps.providers.engine.types import Kind
from apps.providers.urlcheck import check_base_url

VERDICT = {"pass": engine.PASS, "fail": engine.FAIL, "undecided": engine.UNDECIDED}


def search_config(search: CapacitySearch) -> engine.SearchConfig:
    return engine.SearchConfig(
        start=search.start_level, max_level=search.max_level, tolerance=search.tolerance,
        integer=search.space == CapacitySearch.Space.CONCURRENCY, repetitions=search.repetitions,
        max_extra_trials=search.max_extra_trials, max_probes=search.max_probes,
    )  # fmt: skip


def judged(probes: list[CapacityProbe]) -> list[engine.Judged]:
    return [engine.Judged(p.level, p.trial, p.phase, p.verdict) for p in probes]


def probe_duration_s(search: CapacitySearch, level: float) -> float:
    """A probe lasts `probe_duration_s`, longer at a low rate (enough requests for the SLO to be shown met), and
    never past what fits in a task (a level short of requests then gets another trial instead)."""
    if search.space == CapacitySearch.Space.RATE:
        wanted = max(search.probe_duration_s, min_requests(search.slo) / level)
        return min(wanted, max(search.probe_duration_s, max_probe_s() - search.warmup_s))
    return search.probe_duration_s


def _figures(step: LoadSweepStep, summary: RunSummary | None, share: float | None) -> dict:
    """One trial's figures, from its stored run."""
    figures: dict = {"offered": step.level, "achieved_rate_rps": step.achieved_rate_rps,
                     "achieved_concurrency": step.achieved_concurrency, "client_kept_up": step.client_kept_up}  # fmt: skip
    if summary is None:
        return figures
    stat = summary.stat
    throughput = summary.request_throughput_rps
    figures |= {
        "requests": summary.request_count, "error_rate": summary.error_rate,
        "request_throughput_rps": throughput, "output_tps": summary.output_token_throughput_tps,
        "goodput_rps": throughput * share if throughput is not None and share is not None else None,
        "ttft_p50_ms": stat("ttft_ms", "p50"), "ttft_p95_ms": stat("ttft_ms", "p95"),
        "ttft_p99_ms": stat("ttft_ms", "p99"), "tpot_p50_ms": stat("tpot_ms", "p50"),
        "tpot_p95_ms": stat("tpot_ms", "p95"), "itl_p95_ms": stat("itl_ms", "p95"),
        "e2e_p95_ms": stat("e2e_ms", "p95"), "e2e_mean_ms": stat("e2e_ms", "mean"),
        "input_tokens_mean": stat("input_tokens", "mean"), "output_tokens_mean": stat("output_tokens", "mean"),
    }  # fmt: skip
    return figures


def record_probe(
    search: CapacitySearch, probe: engine.Probe, earlier: list[CapacityProbe], step: LoadSweepStep
) -> CapacityProbe | None:
    """Judge a stored step and record it as the search's next probe (inside the step's storing transaction).
    A cancelled step is kept as a run but is no probe: it says nothing about the level."""
    if step.status == Status.CANCELLED or step.run_id is None:
        return None
    slo, cfg = search.slo, search_config(search)
    columns = run_columns(step.run)
    trial_tally = tally(columns, slo)
    same = [p for p in earlier if p.level == probe.level]
    pooled = sum((Tally.from_dict(p.judgement["tally"]) for p in same), trial_tally)
    pooled_verdict, objectives = judge(pooled, slo)
    open_loop = search.space == CapacitySearch.Space.RATE
    signals = saturation_signals(columns, open_loop=open_loop)
    summary = RunSummary.objects.filter(run_id=step.run_id).first()
    figures = _figures(step, summary, goodput_share(columns, slo))
    if not open_loop:
        lower = _passed_throughput(earlier, below=probe.level)
        if reason := engine.plateau(probe.level, figures.get("request_throughput_rps"), lower):
            signals.append(reason)
    saturated = bool(signals) or any(p.judgement.get("saturation") for p in same)
    client_limited = _client_short(search, step) and not saturated
    verdict = engine.SATURATED if saturated else VERDICT[pooled_verdict]
    verdict = engine.trial_verdict(cfg, len(same) + 1, verdict, client_limited)
    if saturated and len(same) + 1 >= cfg.repetitions:
        verdict = engine.SATURATED  # the queue decides; no further trial can change that
    judgement = {
        "tally": trial_tally.as_dict(), "pooled": pooled.as_dict(), "pooled_verdict": pooled_verdict,
        "objectives": [o.as_dict() for o in objectives], "saturation": signals,
        "client_note": step.client_note if step.client_kept_up is False else "",
        "trials_pooled": len(same) + 1,
    }  # fmt: skip
    return CapacityProbe.objects.create(
        search=search, index=len(earlier), level=probe.level, trial=probe.trial, phase=probe.phase, step=step,
        verdict=verdict, judgement=judgement, figures=figures,
    )  # fmt: skip


CLIENT_SHORT = 0.95  # a probe that sent less than this share of its level measured the client, not the server


def _client_short(search: CapacitySearch, step: LoadSweepStep) -> bool:
    """Whether the load generator fell short of the probe's level: fewer sends per second than the rate (open
    loop) or fewer requests in flight than the concurrency (closed loop). A late dispatch alone (the step's
    `client_note`, kept with the judgement) does not void a probe: its requests still went at the level."""
    achieved = step.achieved_rate_rps if search.space == CapacitySearch.Space.RATE else step.achieved_concurrency
    return achieved is not None and achieved < CLIENT_SHORT * step.level


def _passed_throughput(probes: list[CapacityProbe], *, below: float) -> list[tuple[float, float]]:
    """(level, mean request throughput) of the levels below `below` whose verdict is a pass."""
    verdicts = engine.level_verdicts(judged(probes))
    out = []
    for level, verdict in verdicts.items():
        values = [p.figures.get("request_throughput_rps") for p in probes if p.level == level]
        values = [v for v in values if v is not None]
        if verdict == engine.PASS and level < below and values:
            out.append((level, float(np.mean(values))))
    return out


def _step_for(search: CapacitySearch, sweep: LoadSweep, probe: engine.Probe) -> LoadSweepStep:
    """The step for `probe`: the one a lost worker left without a run when it is this probe, else a new one."""
    lost = sweep.steps.filter(run__isnull=True, capacity_probe__isnull=True).order_by("index")
    for step in lost:
        if step.level == probe.level and step.trial == probe.trial:
            LoadSweepStep.objects.filter(pk=step.pk).update(status=Status.PENDING)
            return step
        step.delete()
    last = sweep.steps.order_by("-index").values_list("index", flat=True).first()
    step = LoadSweepStep.objects.create(
        sweep=sweep, index=0 if last is None else last + 1, level=probe.level, trial=probe.trial
    )
    sweep.levels = [*sweep.levels, probe.level]
    LoadSweep.objects.filter(pk=sweep.pk).update(levels=sweep.levels)
    return step


def _mean(values: list) -> float | None:
    known = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(known)) if known else None


def _t_interval(values: list) -> list[float] | None:
    """The 95% t interval of a figure across trials (≥ 2), never below 0."""
    known = [v for v in values if v is not None and math.isfinite(v)]
    if len(known) < 2:
        return None
    if np.std(known) == 0:
        return [known[0], known[0]]
    low, high = stats.t.interval(0.95, len(known) - 1, loc=np.mean(known), scale=stats.sem(known))
    return [max(0.0, float(low)), float(high)]


def _objectives(probe: CapacityProbe) -> dict[str, dict]:
    return {o["key"]: o for o in probe.judgement.get("objectives", [])}


def _estimate(low: float, high: float, low_probe: CapacityProbe, high_probe: CapacityProbe) -> float:
    """Capacity within the bracket: where the objective that failed at `high` crosses its target, interpolating
    its share linearly between the two ends; the middle when `high` failed by saturation or stayed undecided."""
    at_low, crossings = _objectives(low_probe), []
    for key, row in _objectives(high_probe).items():
        if row["verdict"] != "fail" or key not in at_low or at_low[key]["share"] is None or row["share"] is None:
            continue
        share_low, share_high, target = at_low[key]["share"], row["share"], row["target"]
        if row["kind"] == "at most":
            share_low, share_high, target = -share_low, -share_high, -target
        if share_low > share_high:
            crossings.append(min(1.0, max(0.0, (share_low - target) / (share_low - share_high))))
    if high_probe.verdict != engine.FAIL or not crossings:
        return (low + high) / 2
    return low + min(crossings) * (high - low)


REASONS = {
    "bracket": "The bracket is within the tolerance.",
    "budget": "The probe budget ran out before the bracket was within the tolerance.",
    "max_level": "Every level up to the maximum met the SLO: the capacity is at least the maximum level.",
    "below_start": "Even the lowest level probed missed the SLO.",
    "client": "The load generator could not keep up at the next level; run the probes on more shards.",
}


def search_result(search: CapacitySearch, probes: list[CapacityProbe], done: engine.Done) -> dict:
    """The answer, and the figures at capacity (the highest level that met the SLO, its trials averaged)."""
    low, high = done.low, done.high
    last_of = {p.level: p for p in probes}
    at_low = [p for p in probes if p.level == low]
    figures = {key: _mean([p.figures.get(key) for p in at_low]) for key in (
        "request_throughput_rps", "output_tps", "goodput_rps", "e2e_mean_ms", "tpot_p50_ms", "input_tokens_mean",
        "output_tokens_mean", "ttft_p95_ms", "error_rate")}  # fmt: skip
    rate = search.space == CapacitySearch.Space.RATE
    capacity = None
    if low is not None:
        capacity = low if high is None or not rate else _estimate(low, high, last_of[low], last_of[high])
        capacity = float(f"{capacity:.4g}")
    capacity_rps = capacity if rate else figures["request_throughput_rps"]
    implied = None
    if capacity_rps is not None and figures["e2e_mean_ms"] is not None:
        implied = capacity_rps * figures["e2e_mean_ms"] / 1000 if rate else low
    output_tps = figures["output_tps"]
    gpus = search.hardware.accelerator_count if search.hardware_id else None
    cost, basis = None, "no hourly cost on the hardware and no token prices on the endpoint"
    if search.hardware_id and search.hardware.hourly_cost_usd:
        cost = cost_per_1m_output_usd(search.hardware.hourly_cost_usd, output_tps)
        basis = f"{search.hardware.name} at ${search.hardware.hourly_cost_usd:g} per hour"
    elif search.endpoint.price_output_per_1m_usd is not None and figures["output_tokens_mean"]:
        endpoint = search.endpoint
        ratio = (figures["input_tokens_mean"] or 0) / figures["output_tokens_mean"]
        cost = endpoint.price_output_per_1m_usd + (endpoint.price_input_per_1m_usd or 0) * ratio
        basis = "the endpoint's token prices (input tokens per output token included)"
    if capacity is None:
        cost = None
    limited_by = []
    if high is not None:
        probe = last_of[high]
        limited_by = [o["label"] for o in probe.judgement.get("objectives", []) if o["verdict"] == "fail"]
        limited_by += probe.judgement.get("saturation", [])
    undecided = sorted({p.level for p in probes if p.verdict == engine.UNDECIDED})
    return {
        "capacity": capacity, "low": low, "high": high, "unit": search.unit, "reason": done.reason,
        "note": REASONS[done.reason], "capacity_rps": capacity_rps, "implied_concurrency": implied,
        "goodput_rps": figures["goodput_rps"], "output_tps": output_tps,
        "output_tps_per_gpu": output_tps / gpus if output_tps is not None and gpus else None,
        "output_tps_per_user": 1000 / figures["tpot_p50_ms"] if figures["tpot_p50_ms"] else None,
        "cost_per_1m_output_usd": cost, "cost_basis": basis, "limited_by": limited_by,
        "probes_used": len(probes), "trials_at_capacity": len(at_low), "undecided_levels": undecided,
        "nonmonotone_levels": list(done.nonmonotone),
        "interval": {key: _t_interval([p.figures.get(key) for p in at_low])
                     for key in ("goodput_rps", "output_tps", "request_throughput_rps")},
        "wall_time_s": (timezone.now() - search.started_at).total_seconds() if search.started_at else None,
    }  # fmt: skip


def _finish(search: CapacitySearch, lease: str, status: str, error: str = "", result: dict | None = None) -> str:
    """End the search, if this task still holds it (a task that lost its lease leaves the search alone)."""
    fields: dict = {"status": status, "error": error, "finished_at": timezone.now(), "lease": ""}
    if result is not None:
        fields |= {"result": result, "phase": "done", "capacity": result["capacity"], "capacity_low": result["low"],
                   "capacity_high": result["high"], "capacity_rps": result["capacity_rps"],
                   "goodput_rps": result["goodput_rps"], "output_tps": result["output_tps"],
                   "output_tps_per_gpu": result["output_tps_per_gpu"],
                   "output_tps_per_user": result["output_tps_per_user"],
                   "cost_per_1m_output_usd": result["cost_per_1m_output_usd"]}  # fmt: skip
    if not CapacitySearch.objects.filter(pk=search.pk, lease=lease).update(**fields):
        return "lost lease"
    LoadSweep.objects.filter(pk=search.sweep_id).update(
        status=status, error=error, finished_at=timezone.now(), progress={}
    )
    return status


def chunk_budget_s() -> float:
    """How long one task runs probes before it hands the search to the next one (half the queue's time limit)."""
    return settings.Q_CLUSTER["timeout"] * 0.5


def _fresh(search: CapacitySearch) -> bool:
    """Whether the search's worker showed signs of life within CAPACITY_STALL_S (between probes, or its probe's pulse)."""
    beats = [t for t in (search.heartbeat_at, search.sweep.heartbeat_at if search.sweep else None) if t]
    return bool(beats) and timezone.now() - max(beats) < stall_after()


def _enqueue_next(search_id: int, lease: str) -> None:
    """The search's next chunk waits its turn in the fair queue like any run's task (apps/jobs)."""
    team_id = CapacitySearch.objects.filter(pk=search_id).values_list("team_id", flat=True).first()
    job_submit(team_id=team_id, func="apps.capacity.tasks.capacity_run", args=(search_id, lease), group="capacity")


def run_search(search_id: int, lease: str = "") -> str:
    """Run a search until it has its answer, is cancelled or fails, or its chunk of time is used up (then the next
    chunk is queued with the lease). Safe to run again: a task without the lease goes on only when the search is
    pending or its worker went silent."""
    search = CapacitySearch.objects.select_related("endpoint", "hardware", "sweep").get(pk=search_id)
    if search.status not in (Status.PENDING, Status.RUNNING):  # RUNNING: re-delivered after a lost worker
        return search.status
    if search.status == Status.RUNNING and search.lease and lease != search.lease and _fresh(search):
        return "running elsewhere"
    mine, now = lease or uuid.uuid4().hex, timezone.now()
    search.started_at = search.started_at or now
    taken = CapacitySearch.objects.filter(pk=search.pk, lease=search.lease, status__in=[Status.PENDING, Status.RUNNING])
    if not taken.update(lease=mine, status=Status.RUNNING, error="", started_at=search.started_at, heartbeat_at=now):
        return "running elsewhere"
    if search.cancel_requested:
        return _finish(search, mine, Status.CANCELLED)
    LoadSweep.objects.filter(pk=search.sweep_id).update(
        status=Status.RUNNING, error="", started_at=search.sweep.started_at or now, heartbeat_at=now
    )
    sweep = LoadSweep.objects.select_related(
        "endpoint", "team", "variant", "hardware", "deployment", "workload_version__workload",
        "workload_version__tokenizer", "workload_version__dataset",
    ).get(pk=search.sweep_id)  # fmt: skip
    config = sweep.endpoint.config()
    cfg = search_config(search)
    deadline, ran_here = time.monotonic() + chunk_budget_s(), 0
    mine_only = CapacitySearch.objects.filter(pk=search.pk, lease=mine)
    try:
        if config.kind != Kind.SIM:
            check_base_url(config.base_url, must_resolve=True)
        plan = prepare_workload(sweep, config)
        while True:
            if not mine_only.exists():
                return "lost lease"
            if mine_only.filter(cancel_requested=True).exists():
                return _finish(search, mine, Status.CANCELLED)
            probes = list(search.probes.select_related("step").order_by("index"))
            decision = engine.next_step(cfg, judged(probes))
            if isinstance(decision, engine.Done):
                return _finish(search, mine, Status.COMPLETED, result=search_result(search, probes, decision))
            duration = probe_duration_s(search, decision.level)
            if ran_here and time.monotonic() + duration + search.warmup_s + 10 > deadline:
                _enqueue_next(search.pk, mine)
                return "continued"
            step = _step_for(search, sweep, decision)
            sweep.step_duration_s = duration
            LoadSweep.objects.filter(pk=sweep.pk).update(step_duration_s=duration)
            phase = "bisect" if decision.phase == "bisect" else "ramp" if decision.phase == "ramp" else search.phase
            mine_only.update(phase=phase, heartbeat_at=timezone.now())
            ran = run_and_store_step(
                sweep, step, config, plan, on_stored=partial(record_probe, search, decision, probes)
            )
            ran_here += 1
            mine_only.update(heartbeat_at=timezone.now(), recoveries=0)
            if ran.auth_refused:
                return _finish(search, mine, Status.FAILED, ran.auth_refused)
            if ran.outcome.cancelled:
                return _finish(search, mine, Status.CANCELLED)
    except Exception as exc:  # the search records why (never the key); the queue sees a finished task
        message = f"{type(exc).__name__}: {exc}"
        if config.api_key:
            message = message.replace(config.api_key, "[key]")
        return _finish(search, mine, Status.FAILED, message[:2000])
