"""Builders for the capacity pages' and API's tests: searches with probes and answers made directly as rows
(the runner is not needed to show them)."""

import pytest

from apps.batches.models import LoadSweepStep
from apps.capacity.models import CapacityProbe, CapacitySearch, Status
from apps.capacity.services import capacity_create
from apps.providers.models import ProviderEndpoint
from tests.factories import HardwareProfileFactory, ModelVariantFactory

SLO = {"objectives": [{"metric": "ttft_ms", "percentile": 95, "max_ms": 500},
                      {"metric": "tpot_ms", "percentile": 95, "max_ms": 50}], "max_error_rate": 0.01}  # fmt: skip


def sim(team, name="sim") -> ProviderEndpoint:
    return ProviderEndpoint.objects.get_or_create(team=team, name=name, defaults={"kind": "sim",
                                                  "model_names": ["sim-small"]})[0]  # fmt: skip


def search_for(team, **fields) -> CapacitySearch:
    """A pending search on the team's simulator, priced hardware ($2/h, 1 GPU)."""
    defaults = {
        "name": "llama on h100", "endpoint": sim(team), "model": "sim-small", "variant": ModelVariantFactory(team=team),
        "hardware": HardwareProfileFactory(team=team), "slo": SLO, "start_level": 8, "max_level": 64,
    }  # fmt: skip
    return capacity_create(team=team, user=None, **(defaults | fields))


def add_probe(search, index, level, verdict, *, trial=0, phase="ramp", run=None, ttft_p95_ms=300.0, goodput=None,
              saturation=()) -> CapacityProbe:  # fmt: skip
    """A judged probe: a completed step of the search's sweep with its figures and judgement."""
    step = LoadSweepStep.objects.create(sweep=search.sweep, index=index, level=level, trial=trial,
                                        status=Status.COMPLETED, run=run)  # fmt: skip
    figures = {"achieved_rate_rps": level * 0.99, "request_throughput_rps": level * 0.98,
               "goodput_rps": level * 0.95 if goodput is None else goodput, "output_tps": level * 120,
               "ttft_p95_ms": ttft_p95_ms, "tpot_p95_ms": 30.0, "e2e_p95_ms": 4000.0, "error_rate": 0.002}  # fmt: skip
    judgement = {
        "objectives": [
            {"key": "p95_ttft_ms", "label": "p95 TTFT ≤ 500 ms", "share": 0.962, "low": 0.941, "high": 0.976,
             "met": 481, "n": 500, "target": 0.95, "verdict": "pass", "kind": "at least"},
        ],
        "saturation": list(saturation),
    }  # fmt: skip
    return CapacityProbe.objects.create(search=search, index=index, level=level, trial=trial, phase=phase, step=step,
                                        verdict=verdict, judgement=judgement, figures=figures)  # fmt: skip


def finish(search, *, capacity=41.8, low=40.1, high=43.5, cost=0.37, **result) -> CapacitySearch:
    """Mark the search found, with its answer as the runner stores it."""
    answer = {
        "capacity": capacity, "low": low, "high": high, "unit": search.unit, "capacity_rps": capacity,
        "implied_concurrency": 12.5, "goodput_rps": 40.0, "output_tps": 5000.0, "output_tps_per_gpu": 5000.0,
        "output_tps_per_user": 42.0, "cost_per_1m_output_usd": cost,
        "cost_basis": "h100 at $2 per hour" if cost is not None else "no hourly cost on the hardware and no token "
        "prices on the endpoint", "limited_by": ["p95 TTFT ≤ 500 ms"], "probes_used": search.probes.count(),
        "trials_at_capacity": 3, "undecided_levels": [], "note": "The bracket is within the tolerance.",
        "interval": {"goodput_rps": [38.5, 41.5], "output_tps": None, "request_throughput_rps": None},
        "wall_time_s": 321.0,
    } | result  # fmt: skip
    CapacitySearch.objects.filter(pk=search.pk).update(
        status=Status.COMPLETED, phase="done", result=answer, capacity=capacity, capacity_low=low, capacity_high=high,
        capacity_rps=capacity, goodput_rps=answer["goodput_rps"], cost_per_1m_output_usd=cost,
    )  # fmt: skip
    search.refresh_from_db()
    return search


@pytest.fixture(name="queued")
def queued_fixture(monkeypatch):
    """The searches the services queue (by primary key), instead of queueing them."""
    calls: list[tuple] = []
    monkeypatch.setattr("apps.capacity.services.job_submit", lambda **kw: calls.append((kw["func"], *kw["args"])))
    return calls
