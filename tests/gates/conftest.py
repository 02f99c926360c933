"""Gate tests: the run kinds (apps.automation.runkinds) replaced by a table of fake runs a test drives, and the
notifications recorded."""

from dataclasses import dataclass, field

import pytest
from django.core.exceptions import ObjectDoesNotExist, ValidationError

from apps.automation import runkinds
from apps.automation.runkinds import Comparison, Figure, RunRef


def figure(name, value, *, low=None, high=None, unit="", n=100, higher_is_better=True, label=None) -> Figure:
    return Figure(name=name, label=label or name.replace("_", " "), value=value, unit=unit, ci_low=low,
                  ci_high=high, n=n, higher_is_better=higher_is_better)  # fmt: skip


@dataclass
class FakeRun:
    team_id: int
    kind: str
    state: str = "completed"
    error: str = ""
    figures: dict = field(default_factory=dict)


@dataclass
class FakeRuns:
    """Runs by (kind, id); what run_repeat made and with which overrides; what run_compare answers."""

    runs: dict = field(default_factory=dict)
    repeats: list = field(default_factory=list)
    next_id: int = 1000
    next_state: str = "pending"
    next_figures: dict = field(default_factory=dict)
    comparisons: list = field(default_factory=list)
    refuse: Exception | None = None

    def add(self, team, kind="experiment", *, run_id=None, **fields) -> int:
        run_id = run_id or self._new_id()
        self.runs[(kind, run_id)] = FakeRun(team_id=team.pk, kind=kind, **fields)
        return run_id

    def _new_id(self) -> int:
        self.next_id += 1
        return self.next_id

    def get(self, ref: RunRef) -> FakeRun:
        try:
            return self.runs[(ref.kind, ref.run_id)]
        except KeyError:
            raise ObjectDoesNotExist(f"no {ref.kind} {ref.run_id}") from None

    def finish(self, ref_or_id, *, state="completed", error="", figures=None, kind="experiment"):
        run_id = ref_or_id.run_id if isinstance(ref_or_id, RunRef) else ref_or_id
        run = self.runs[(kind, run_id)]
        run.state, run.error = state, error
        if figures is not None:
            run.figures = figures

    # --- the contract ----------------------------------------------------------------------------------------

    def template_get(self, *, team, kind, run_id):
        if kind not in runkinds.KINDS:
            raise ValidationError({"kind": f"Unknown run kind “{kind}”."})
        run = self.get(RunRef(kind, run_id))
        if run.team_id != team.pk:
            raise ObjectDoesNotExist("not the team's")
        return type("Run", (), {"pk": run_id, "team_id": run.team_id})()

    def run_repeat(self, *, kind, run_id, user=None, endpoint_id=None, model=None):
        if self.refuse is not None:
            raise self.refuse
        template = self.get(RunRef(kind, run_id))
        new_id = self._new_id()
        self.runs[(kind, new_id)] = FakeRun(team_id=template.team_id, kind=kind, state=self.next_state,
                                            figures=dict(self.next_figures))  # fmt: skip
        self.repeats.append({"kind": kind, "run_id": run_id, "user": user, "endpoint_id": endpoint_id,
                             "model": model, "new": new_id})  # fmt: skip
        return RunRef(kind, new_id)

    def run_state(self, ref):
        return self.get(ref).state

    def run_error(self, ref):
        return self.get(ref).error

    def run_title(self, ref):
        return f"{runkinds.KIND_LABELS[ref.kind]} #{ref.run_id}"

    def run_url(self, ref):
        return f"/experiments/{ref.run_id}/"

    def run_figures(self, ref):
        return dict(self.get(ref).figures)

    def run_compare(self, baseline, current, *, alpha=0.05):
        self.get(baseline), self.get(current)
        return list(self.comparisons)


GOOD_FIGURES = {
    "pass_rate": figure("pass_rate", 0.93, low=0.88, high=0.96, label="Pass rate"),
    "mean_score": figure("mean_score", 0.81, low=0.77, high=0.85, label="Mean score"),
    "error_rate": figure("error_rate", 0.01, low=0.0, high=0.03, higher_is_better=False, label="Error rate"),
}


@pytest.fixture
def fake_runs(monkeypatch):
    fake = FakeRuns()
    for name in ("template_get", "run_repeat", "run_state", "run_error", "run_title", "run_url", "run_figures",
                 "run_compare"):  # fmt: skip
        monkeypatch.setattr(runkinds, name, getattr(fake, name))
    return fake


@pytest.fixture
def notified(monkeypatch):
    """Every notify() of the gates, as its keyword arguments."""
    calls: list[dict] = []
    monkeypatch.setattr("apps.gates.services.notify", lambda **kwargs: calls.append(kwargs))
    return calls


def comparison(name, baseline, current, *, verdict="no change", p=0.5, test="Mann-Whitney U", unit="ms"):
    return Comparison(name=name, label=name.replace("_", " "), baseline=baseline, current=current, unit=unit,
                      test=test, p_value=p, verdict=verdict)  # fmt: skip
