"""Demo test cases of every evaluator kind (approved and pending) and two experiments against the
simulated endpoint that differ only in temperature (an experiment runs one set of sampling parameters),
run at once so their pages have evaluated responses to compare."""

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


LEGACY_NAME = "Demo: simulator at two temperatures"
TEMPERATURES = [("Demo: simulator at temperature 0.2", 0.2), ("Demo: simulator at temperature 1.0", 1.0)]


def demo_quality_load(*, team: Team, user: AbstractBaseUser) -> int:
    """Create the demo test cases once (the first four approved, the last pending) and a fresh pair of
    demo experiments against the simulator, one at each temperature; returns their response count."""
    if not TestCase.objects.filter(team=team).exists():
        for i, (title, prompt, expected, kind, settings) in enumerate(CASES):
            case = testcase_create(
                team=team, author=user, submit=True, title=title, prompt=prompt, expected_output=expected,
                evaluator=kind, evaluator_settings=settings, tags=["demo"],
            )  # fmt: skip
            if i < len(CASES) - 1:
                testcase_approve(testcase=case, reviewer=user)
    endpoint = ProviderEndpoint.objects.get(team=team, name="Simulator")
    # Earlier demo loads made one experiment under an older name; replace it and the pair below.
    Experiment.objects.filter(team=team, name__in=[LEGACY_NAME, *(name for name, _ in TEMPERATURES)]).delete()
    approved = list(TestCase.objects.filter(team=team, status=TestCase.Status.APPROVED, is_current=True))
    responses = 0
    for name, temperature in TEMPERATURES:
        experiment = experiment_create(
            team=team, user=user, name=name, test_cases=approved,
            targets=[(endpoint, "sim-small"), (endpoint, "sim-large")],
            parameters={"temperature": temperature, "max_tokens": 80}, responses_per_item=3,
            description=f"Generated demo data against the simulated endpoint at temperature {temperature}; "
            "its twin differs only in temperature.", tags=["demo"],
        )  # fmt: skip
        run_experiment(experiment.pk)
        responses += experiment.responses.count()
    return responses
