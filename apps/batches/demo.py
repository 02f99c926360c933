"""A demo parameter sweep against an instant simulated endpoint, run at once so its live page,
heatmap and analysis have results."""

from apps.accounts.models import Team
from apps.batches.batch_runner import run_batch_chunk
from apps.batches.models import Batch
from apps.batches.services import batch_create, batch_start
from apps.experiments.models import Experiment
from apps.providers.models import ProviderEndpoint

NAME = "Demo: temperature × top_p on the simulator"


def demo_batch_load(*, team: Team, user) -> int:
    """A fresh demo sweep (8 temperatures × 6 top_p values × 2 responses); returns its result count."""
    endpoint, _ = ProviderEndpoint.objects.update_or_create(
        team=team, name="Simulator (instant)",
        defaults={"kind": "sim", "base_url": "sim://local?zero_latency=1", "model_names": ["sim-small"],
                  "price_input_per_1m_usd": 0.5, "price_output_per_1m_usd": 1.5},
    )  # fmt: skip
    Experiment.objects.filter(team=team, name=NAME, kind=Experiment.Kind.BATCH).delete()
    batch = batch_create(
        team=team, user=user, name=NAME, targets=[(endpoint, "sim-small")],
        prompt="Explain in a short paragraph why caching speeds up model serving.",
        description="Generated demo data against the simulated endpoint.", repetitions=2, concurrency=16,
        parameter_ranges={"temperature": {"min": 0.1, "max": 1.5, "step": 0.2}, "top_p": {"min": 0.5, "max": 1.0, "step": 0.1},
                          "max_tokens": 200},
        tags=["demo"],
    )  # fmt: skip
    batch_start(batch=batch, confirm=True)
    while run_batch_chunk(batch.pk) == "continued":
        pass
    return Batch.objects.get(pk=batch.pk).completed_results
