"""Run kinds stood in for by a dictionary, so schedule tests control each run's state, figures and comparison.

`FakeKinds.install(monkeypatch)` replaces the functions of apps.automation.runkinds (the contract) for one test;
the end-to-end tests use the real ones."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from django.core.exceptions import ObjectDoesNotExist

from apps.automation import runkinds
from apps.automation.models import Schedule, ScheduledRun
from apps.automation.runkinds import Comparison, Figure, RunRef


@dataclass
class FakeRun:
    team_id: int
    kind: str
    state: str = "completed"
    error: str = ""
    value: float = 0.9  # the "pass_rate" figure
    copied_from: int | None = None


@dataclass
class FakeKinds:
    runs: dict[int, FakeRun] = field(default_factory=dict)
    repeats: list[dict] = field(default_factory=list)  # each run_repeat call's arguments
    refuse: Exception | None = None  # raised by the next run_repeat calls while set
    next_value: float = 0.9  # the figure a repeat will have
    ids: itertools.count = field(default_factory=lambda: itertools.count(1000))

    @classmethod
    def install(cls, monkeypatch) -> FakeKinds:
        fake = cls()
        for name in ("template_get", "run_repeat", "run_state", "run_error", "run_title", "run_url", "run_figures",
                     "run_compare"):  # fmt: skip
            monkeypatch.setattr(runkinds, name, getattr(fake, name), raising=False)
        return fake

    def add(self, team, kind: str = "experiment", **fields) -> int:
        run_id = next(self.ids)
        self.runs[run_id] = FakeRun(team_id=team.pk, kind=kind, **fields)
        return run_id

    # --- the contract ---

    def _get(self, kind: str, run_id: int) -> FakeRun:
        run = self.runs.get(run_id)
        if run is None or run.kind != kind:
            raise ObjectDoesNotExist(f"no {kind} #{run_id}")
        return run

    def template_get(self, *, team, kind: str, run_id: int):
        run = self._get(kind, run_id)
        if run.team_id != team.pk:
            raise ObjectDoesNotExist("another team's run")
        return run

    def run_repeat(self, *, kind: str, run_id: int, user=None, **overrides) -> RunRef:
        self.repeats.append({"kind": kind, "run_id": run_id, "user": user, **overrides})
        if self.refuse is not None:
            raise self.refuse
        template = self._get(kind, run_id)
        new_id = next(self.ids)
        self.runs[new_id] = FakeRun(team_id=template.team_id, kind=kind, state="pending", value=self.next_value,
                                    copied_from=run_id)  # fmt: skip
        return RunRef(kind=kind, run_id=new_id)

    def run_state(self, ref: RunRef) -> str:
        return self._get(ref.kind, ref.run_id).state

    def run_error(self, ref: RunRef) -> str:
        return self._get(ref.kind, ref.run_id).error

    def run_title(self, ref: RunRef) -> str:
        self._get(ref.kind, ref.run_id)
        return f"Nightly check #{ref.run_id}"

    def run_url(self, ref: RunRef) -> str:
        return f"/experiments/{ref.run_id}/"

    def run_figures(self, ref: RunRef) -> dict[str, Figure]:
        run = self._get(ref.kind, ref.run_id)
        return {
            "pass_rate": Figure("pass_rate", "Pass rate", run.value, "", run.value - 0.05, run.value + 0.05, 100, True),
            "p95_ttft_ms": Figure("p95_ttft_ms", "p95 TTFT", 350.0, "ms", None, None, 100, False),
        }

    def run_compare(self, baseline: RunRef, current: RunRef, *, alpha: float = 0.05) -> list[Comparison]:
        before, after = self._get(baseline.kind, baseline.run_id), self._get(current.kind, current.run_id)
        drop = before.value - after.value
        verdict, p = (
            ("regression", 0.001) if drop > 0.1 else ("improvement", 0.002) if drop < -0.1 else ("no change", 0.6)
        )
        return [
            Comparison("pass_rate", "Pass rate", before.value, after.value, "", "two-proportion z-test", p, verdict),
            Comparison("p95_ttft_ms", "p95 TTFT", 350.0, 350.0, "ms", "Mann-Whitney U", 0.9, "no change"),
        ]

    # --- helpers for tests ---

    def finish(self, scheduled: ScheduledRun, state: str = "completed", error: str = "") -> None:
        run = self.runs[scheduled.run_id]
        run.state, run.error = state, error


def latest(schedule: Schedule) -> ScheduledRun:
    return ScheduledRun.objects.filter(schedule=schedule).order_by("-fired_at", "-id").first()
