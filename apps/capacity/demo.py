"""Demo capacity searches: the same model on the two demo machines, each against a simulated server with a capacity
of its own, run at once (about ten seconds each) so the capacity and decision pages have answers."""

from apps.accounts.models import Team
from apps.capacity.models import CapacitySearch
from apps.capacity.runner import run_search
from apps.capacity.services import capacity_create, capacity_delete
from apps.hardware.models import Deployment, HardwareProfile
from apps.providers.models import ProviderEndpoint
from apps.scores.models import ModelVariant

SLO = {"objectives": [{"metric": "ttft_ms", "percentile": 90, "max_ms": 200},
                      {"metric": "tpot_ms", "percentile": 90, "max_ms": 10}], "max_error_rate": 0.01}  # fmt: skip
# hardware name, simulated server: 8 requests at once; the slower machine takes twice as long per token.
MACHINES = [
    ("1x H100 80GB", "sim://demo-h100?ttft_ms=15&itl_ms=3&jitter=0.05&max_batch=8&tokens_per_s=4000"),
    ("1x L40S 48GB", "sim://demo-l40s?ttft_ms=20&itl_ms=6&jitter=0.05&max_batch=8&tokens_per_s=2000"),
]
MODEL = ("meta-llama/Llama-3.1-8B-Instruct", "BF16")


def demo_capacity_load(*, team: Team, user) -> int:
    """Fresh demo searches, run to their answer; returns how many found one."""
    for search in CapacitySearch.objects.filter(team=team, name__startswith="Demo:"):
        capacity_delete(search=search)
    variant = ModelVariant.objects.get(team=team, model_name=MODEL[0], quantization=MODEL[1])
    deployment = Deployment.objects.filter(team=team, name="vLLM 0.11 TP1").first()
    found = 0
    for hardware_name, url in MACHINES:
        hardware = HardwareProfile.objects.get(team=team, name=hardware_name)
        endpoint, _ = ProviderEndpoint.objects.update_or_create(
            team=team, name=f"Simulator ({hardware_name})",
            defaults={"kind": "sim", "base_url": url, "model_names": ["sim-medium"]},
        )  # fmt: skip
        search = capacity_create(
            team=team, user=user, name=f"Demo: capacity on {hardware_name}", endpoint=endpoint,
            model="sim-medium", variant=variant, hardware=hardware, deployment=deployment, slo=SLO, space="rate",
            arrivals="constant", start_level=16, max_level=512, tolerance=0.1, probe_duration_s=1, prompt_tokens=64,
            output_tokens=24,
        )  # fmt: skip
        found += run_search(search.pk) == "completed"
    return found
