"""The demo team's simulated endpoint: every page can be tried with no network and no key."""

from apps.accounts.models import Team
from apps.providers.models import ProviderEndpoint


def demo_endpoint_load(*, team: Team) -> ProviderEndpoint:
    endpoint, _ = ProviderEndpoint.objects.update_or_create(
        team=team,
        name="Simulator",
        defaults={
            "kind": "sim",
            "base_url": "",
            "model_names": ["sim-small", "sim-medium", "sim-large"],
            "price_input_per_1m_usd": 0.0,
            "price_output_per_1m_usd": 0.0,
        },
    )
    return endpoint
