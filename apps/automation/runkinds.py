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
def run_repeat(*, kind: str, run_id: int, user=None) -> RunRef   # a new run with the same configuration, started
    (budget_check applies: may raise BudgetExceeded)
def run_state(ref: RunRef) -> str     # "pending" | "running" | "completed" | "failed" | "cancelled"
def run_error(ref: RunRef) -> str     # why it failed/stopped, "" otherwise
def run_title(ref: RunRef) -> str; def run_url(ref: RunRef) -> str
def run_figures(ref: RunRef) -> dict[str, Figure]
def run_compare(baseline: RunRef, current: RunRef, *, alpha: float = 0.05) -> list[Comparison]
"""
