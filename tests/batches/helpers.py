"""Building blocks of the batch tests: simulated endpoints, approved test cases, sweeps."""

from apps.batches.batch_runner import run_batch_chunk
from apps.batches.services import batch_create
from apps.experiments.services import testcase_approve, testcase_create
from apps.providers.models import ProviderEndpoint
from tests.threaded import closing_connection

FAST = "sim://local?zero_latency=1"


def sim_endpoint(team, name="sim", base_url=FAST, **fields) -> ProviderEndpoint:
    fields.setdefault("model_names", ["sim-small"])
    return ProviderEndpoint.objects.create(team=team, name=name, kind="sim", base_url=base_url, **fields)


def approved_case(team, user, **fields):
    case = testcase_create(team=team, author=user, submit=True, **{"title": "t", "prompt": "Explain caching", **fields})
    return testcase_approve(testcase=case, reviewer=user)


def make_batch(team, *, endpoint=None, ranges=None, **fields):
    endpoint = endpoint or sim_endpoint(team)
    defaults = {"name": "sweep", "prompt": "Explain why caching speeds up model serving.", "repetitions": 2,
                "concurrency": 4}  # fmt: skip
    defaults.update(fields)
    return batch_create(
        team=team, user=None, targets=[(endpoint, "sim-small")],
        parameter_ranges=ranges or {"temperature": [0.2, 0.8, 1.4], "top_p": [0.5, 1.0]}, **defaults,
    )  # fmt: skip


@closing_connection
def run_until_done(batch_id: int) -> None:
    """The django-q worker's part: chunk after chunk until the batch ends."""
    outcome = "continued"
    while outcome == "continued":
        outcome = run_batch_chunk(batch_id)
