"""What schedules and CI gates need of each run kind (issue 17): repeat a run, read its state and figures, compare two.

CONTRACT (the gates helper implements it; the schedules helper uses it):

KINDS = ("experiment", "parameter_sweep", "load_sweep", "benchmark_run", "capacity_search")

@dataclass(frozen=True) class RunRef: kind: str; run_id: int
@dataclass(frozen=True) class Figure: name: str; label: str; value: float | None; unit: str;
    ci_low: float | None; ci_high: float | None; n: int; higher_is_better: bool
@dataclass(frozen=True) class Comparison: name: str; label: str; baseline: float | None; current: float | None;
    unit: str; test: str; p_value: float | None; verdict: str  # "regression" | "improvement" | "no change" | "no data"

def template_get(*, team, kind: str, run_id: int)   -> the run model instance of `team` (Http404-able: raises
    ObjectDoesNotExist when it is not the team's)
def run_repeat(*, kind: str, run_id: int, user=None, endpoint_id=None, model=None) -> RunRef   # a new run with the
    same configuration, started (budget_check applies: may raise BudgetExceeded)
def run_state(ref: RunRef) -> str     # "pending" | "running" | "completed" | "failed" | "cancelled"
def run_error(ref: RunRef) -> str     # why it failed/stopped, "" otherwise
def run_title(ref: RunRef) -> str; def run_url(ref: RunRef) -> str
def run_figures(ref: RunRef) -> dict[str, Figure]
def run_compare(baseline: RunRef, current: RunRef, *, alpha: float = 0.05) -> list[Comparison]
def run_error_rate(ref: RunRef) -> float | None

Details (docs/run-figures.md lists every figure, interval and test):

* An unknown kind raises `ValidationError({"kind": …})`. A run that is not the team's (or not of that kind: a
  parameter sweep's experiment is not an "experiment", a capacity search's own load sweep is not a "load_sweep")
  raises the model's DoesNotExist (an ObjectDoesNotExist).
* run_repeat creates the new run and starts it through the app's own services (experiment_create/experiment_start,
  batch_create/batch_start, sweep_create/sweep_start, benchmark_run_create/benchmark_run_start,
  capacity_create/capacity_start), so budgets and the fair queue apply. BudgetExceeded propagates as it is (a
  ValidationError); every other refusal of the apps (a bad override, a retired test case, a sweep over the team's
  limit that was never confirmed …) is raised as `RepeatRefused`, a ValidationError naming the field where there
  is one. Overrides: `endpoint_id` replaces every target's endpoint (it must be the team's), `model` every
  target's model; targets that become the same are asked once.
* run_url is the run's page path ("/experiments/12/"); prefix settings.SITE_URL for links outside the site.
* run_figures: the headline figure first (what a timeline charts). Figure names are stable identifiers (gates'
  criteria and schedules' timelines use them); docs/run-figures.md lists them. Load sweeps name their figures per
  level ("p95_ttft_ms@8": level 8, concurrency or req/s) and, with one level only, also without the suffix.
* run_compare compares each figure both runs have (figures of one run only are "no data"); p-values are
  Holm-adjusted over the figures tested in the comparison; a verdict is "regression" / "improvement" only when the
  adjusted p < alpha (the capacity bracket test has no p-value: brackets that do not overlap decide).
"""

from apps.automation.models import KIND_LABELS  # noqa: F401
from apps.automation.runkinds.base import (  # noqa: F401
    FINISHED_STATES,
    KINDS,
    STATES,
    Comparison,
    Figure,
    RepeatRefused,
    RunRef,
    runs_queryset,
    template_get,
)
from apps.automation.runkinds.compare import error_counts, run_compare, run_error_rate  # noqa: F401
from apps.automation.runkinds.figures import level_suffix, quantile_interval, run_figures  # noqa: F401
from apps.automation.runkinds.repeat import run_error, run_repeat, run_state, run_title, run_url  # noqa: F401
