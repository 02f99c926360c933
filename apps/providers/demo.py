"""The demo team's simulated endpoint: every page can be tried with no network and no key."""

from apps.accounts.models import Team
from apps.providers.models import ProviderEndpoint

# A simulated server of 32 concurrent requests and 4,000 output tokens/s: the demo experiments finish in
# seconds, and a load sweep past 32 clients still shows queueing (docs/metrics.md, the simulator).
DEMO_SIM_URL = "sim://demo?max_batch=32&tokens_per_s=4000"


def demo_endpoint_load(*, team: Team) -> ProviderEndpoint:
    """The demo team's simulated endpoint, created or refreshed."""
    endpoint, _ = ProviderEndpoint.objects.update_or_create(
        team=team,
        name="Simulator",
        defaults={
            "kind": "sim",
            "base_url": DEMO_SIM_URL,
            "max_concurrency": 32,  # as many as the simulated server admits: the demo experiments ask at once
            "model_names": ["sim-small", "sim-medium", "sim-large"],
            "price_input_per_1m_usd": 0.0,
            "price_output_per_1m_usd": 0.0,
        },
    )
    return endpoint
