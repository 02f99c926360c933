"""Run kinds: the shared types, the kinds and their models."""

from __future__ import annotations

from dataclasses import dataclass

from django.core.exceptions import ValidationError

from apps.automation.models import RunKind

KINDS = tuple(RunKind.values)
STATES = ("pending", "running", "completed", "failed", "cancelled")
FINISHED_STATES = ("completed", "failed", "cancelled")


@dataclass(frozen=True)
class RunRef:
    kind: str
    run_id: int


@dataclass(frozen=True)
class Figure:
    name: str
    label: str
    value: float | None
    unit: str
    ci_low: float | None
    ci_high: float | None
    n: int
    higher_is_better: bool


@dataclass(frozen=True)
class Comparison:
    name: str
    label: str
    baseline: float | None
    current: float | None
    unit: str
    test: str
    p_value: float | None
    verdict: str  # "regression" | "improvement" | "no change" | "no data"


class RepeatRefused(ValidationError):
    """The app refused to make or start the repeat (not the budget: BudgetExceeded is raised as it is)."""


# --- the kinds' models ------------------------------------------------------------------------------------------


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValidationError({"kind": f"Unknown run kind “{kind}”: one of {', '.join(KINDS)}."})


def runs_queryset(kind: str):
    """The runs of a kind (every team's)."""
    _check_kind(kind)
    if kind in ("experiment", "parameter_sweep"):
        from apps.experiments.models import Experiment

        wanted = Experiment.Kind.SINGLE if kind == "experiment" else Experiment.Kind.BATCH
        return Experiment.objects.filter(kind=wanted)
    if kind == "load_sweep":
        from apps.batches.models import LoadSweep

        return LoadSweep.objects.filter(managed_by="")
    if kind == "benchmark_run":
        from apps.benchmarks.models import BenchmarkRun

        return BenchmarkRun.objects.all()
    from apps.capacity.models import CapacitySearch

    return CapacitySearch.objects.all()


def template_get(*, team, kind: str, run_id: int):
    """The run `run_id` of `kind` of `team`; DoesNotExist (ObjectDoesNotExist) when the team has no such run."""
    return runs_queryset(kind).get(team=team, pk=run_id)


def _run(ref: RunRef):
    return runs_queryset(ref.kind).get(pk=ref.run_id)
