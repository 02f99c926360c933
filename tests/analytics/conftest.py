"""One fixed dataset for the analytics tests: two models on three test cases over ten days in two
experiments, with failed requests, and another team whose rows must never show up."""

from dataclasses import dataclass, field
from datetime import timedelta

import numpy as np
import pytest
from django.utils import timezone

from apps.experiments.models import Experiment, ExperimentTarget, Response, TestCase
from apps.providers.models import ProviderEndpoint

DAYS = 10
TEMPERATURES = (0.2, 0.7, 1.2)


@dataclass
class Row:
    model: str
    case: str
    day: int
    experiment: str
    error: bool
    overall: float | None = None
    coherence: float | None = None
    score: float | None = None
    passed: bool | None = None
    temperature: float | None = None
    top_p: float | None = None
    latency_ms: float | None = None
    cost_usd: float | None = None


@dataclass
class Dataset:
    team: object
    rows: list[Row] = field(default_factory=list)
    experiments: dict = field(default_factory=dict)
    cases: dict = field(default_factory=dict)

    def ok(self, **match) -> list[Row]:
        return [r for r in self.rows if not r.error and all(getattr(r, k) == v for k, v in match.items())]


def _case(team, title, tags, evaluator):
    return TestCase.objects.create(team=team, title=title, prompt=f"{title}?", tags=tags, evaluator=evaluator,
                                   status=TestCase.Status.APPROVED)  # fmt: skip


def build(team, *, models=("alpha", "beta"), endpoint_name="Lab", seed=7) -> Dataset:
    rng = np.random.default_rng(seed)
    now = timezone.now()
    endpoint = ProviderEndpoint.objects.create(team=team, name=endpoint_name, kind="sim")
    data = Dataset(team)
    data.cases = {"tc1": _case(team, "Sums", ["math"], "numeric"), "tc2": _case(team, "Counting", ["math", "easy"], "exact_match"),
                  "tc3": _case(team, "Haiku", ["writing"], "contains")}  # fmt: skip
    for name, days in (("first run", range(0, 5)), ("second run", range(5, DAYS))):
        experiment = Experiment.objects.create(team=team, name=name, status=Experiment.Status.COMPLETED,
                                               finished_at=now - timedelta(days=DAYS - max(days)))  # fmt: skip
        targets = {
            m: ExperimentTarget.objects.create(experiment=experiment, endpoint=endpoint, model=m) for m in models
        }
        data.experiments[name] = experiment
        for day in days:
            created = now - timedelta(days=DAYS - 1 - day, hours=1)
            for m_index, model in enumerate(models):
                for c_index, (case_key, case) in enumerate(data.cases.items()):
                    for rep in range(2):
                        repetition = day * 10 + rep
                        temperature = TEMPERATURES[(rep + c_index + day) % 3]
                        top_p = (0.9, 1.0)[(rep + day) % 2]
                        if m_index == 0:
                            overall = round(60 + 2.0 * day - 8 * temperature + rng.normal(0, 3), 2)
                            score = float(rng.choice([0.5, 0.75, 1.0]))
                        else:
                            overall = round(58 + rng.normal(0, 3), 2)
                            score = float(rng.choice([0.0, 0.25, 0.5, 0.75, 1.0]))
                        coherence = round(80 + rng.normal(0, 5), 2)
                        passed = score >= 0.6
                        latency = round(float(150 + 100 * m_index + rng.normal(0, 20)), 3)
                        row = Row(model, case_key, day, name, False, overall, coherence, score, passed, temperature,
                                  top_p, latency, 0.001 * (1 + m_index))  # fmt: skip
                        data.rows.append(row)
                        response = Response.objects.create(
                            experiment=experiment, target=targets[model], test_case=case, item_key=f"tc:{case.pk}",
                            repetition=repetition, content=f"answer {model} {day}", passed=passed, score=score,
                            quality={"overall": overall, "coherence": coherence},
                            parameters={"temperature": temperature, "top_p": top_p, "max_tokens": 200},
                            latency_ms=latency, ttft_ms=latency / 5, cost_usd=row.cost_usd, output_tokens=50,
                        )  # fmt: skip
                        Response.objects.filter(pk=response.pk).update(created_at=created)
            # One failed request per day, for the second model: counted, never averaged.
            response = Response.objects.create(
                experiment=experiment, target=targets[models[-1]], test_case=data.cases["tc1"],
                item_key=f"tc:{data.cases['tc1'].pk}", repetition=day * 10 + 9, error_code="timeout",
                error_message="read timeout", parameters={"temperature": 0.2, "top_p": 0.9},
            )  # fmt: skip
            Response.objects.filter(pk=response.pk).update(created_at=created)
            data.rows.append(Row(models[-1], "tc1", day, name, True))
    return data


@pytest.fixture
def dataset(team):
    return build(team)


@pytest.fixture
def other_dataset(other_team):
    """Another team's rows, with a model name no test of our team may ever see."""
    return build(other_team, models=("other-team-model",), endpoint_name="Theirs", seed=11)
