"""Demo test cases of every evaluator kind (approved and pending) and an experiment against the
simulated endpoint, run at once so its page has evaluated responses."""

from django.contrib.auth.models import AbstractBaseUser

from apps.accounts.models import Team
from apps.experiments.models import Experiment, TestCase
from apps.experiments.runner import run_experiment
from apps.experiments.services import experiment_create, testcase_approve, testcase_create
from apps.providers.models import ProviderEndpoint

CASES = [
    ("Capital of France", "What is the capital of France? Answer with one word.", "Paris", "exact_match", {}),
    ("Mentions caching", "Explain in two sentences why caching speeds up model serving.", "cach", "contains", {}),
    ("Starts with a verb", "Write one instruction to restart a server.", "", "regex", {"pattern": r"^\s*[A-Z][a-z]+"}),
    ("JSON person", "Return a JSON object with a string field name and an integer field age.", "", "json_schema",
     {"schema": {"type": "object", "required": ["name", "age"],
                 "properties": {"name": {"type": "string"}, "age": {"type": "integer"}}}}),
    ("Apples", "Tom has 3 apples and buys 4 more. How many apples does he have? End with #### <number>.",
     "#### 7", "numeric", {}),
]  # fmt: skip


def demo_quality_load(*, team: Team, user: AbstractBaseUser) -> int:
    """Create the demo test cases once (the first four approved, the last pending) and a fresh
    demo experiment against the simulator; returns its response count."""
    if not TestCase.objects.filter(team=team).exists():
        for i, (title, prompt, expected, kind, settings) in enumerate(CASES):
            case = testcase_create(
                team=team, author=user, submit=True, title=title, prompt=prompt, expected_output=expected,
                evaluator=kind, evaluator_settings=settings, tags=["demo"],
            )  # fmt: skip
            if i < len(CASES) - 1:
                testcase_approve(testcase=case, reviewer=user)
    endpoint = ProviderEndpoint.objects.get(team=team, name="Simulator")
    Experiment.objects.filter(team=team, name="Demo: simulator at two temperatures").delete()
    approved = list(TestCase.objects.filter(team=team, status=TestCase.Status.APPROVED, is_current=True))
    experiment = experiment_create(
        team=team, user=user, name="Demo: simulator at two temperatures", test_cases=approved,
        targets=[(endpoint, "sim-small"), (endpoint, "sim-large")], parameters={"temperature": 0.3, "max_tokens": 80},
        responses_per_item=2, description="Generated demo data against the simulated endpoint.", tags=["demo"],
    )  # fmt: skip
    run_experiment(experiment.pk)
    return experiment.responses.count()
