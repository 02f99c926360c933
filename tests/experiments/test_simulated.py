"""Every stored response knows whether it is simulated: the runner sets it from the endpoint's kind and
the migration backfilled the responses stored before the field existed."""

import importlib

import pytest
from django.apps import apps as django_apps

from apps.experiments.models import Response
from apps.experiments.services import experiment_create
from apps.providers.models import ProviderEndpoint

pytestmark = pytest.mark.django_db
migration = importlib.import_module("apps.experiments.migrations.0006_response_is_simulated_bounds")


def test_the_migration_marks_responses_of_sim_endpoints_simulated(team):
    """Backfill: responses whose target's endpoint is `sim` become simulated; others stay measurements."""
    sim = ProviderEndpoint.objects.create(team=team, name="sim", kind="sim")
    real = ProviderEndpoint.objects.create(team=team, name="real", kind="openai_compatible", base_url="http://x/v1")
    experiment = experiment_create(team=team, user=None, name="e", targets=[(sim, "a"), (real, "b")], prompt="p")
    for target in experiment.targets.all():
        Response.objects.create(experiment=experiment, target=target, item_key="prompt")
    assert not Response.objects.filter(is_simulated=True).exists()
    migration.mark_simulated(django_apps, None)
    assert dict(Response.objects.values_list("target__endpoint__kind", "is_simulated")) == {
        "sim": True, "openai_compatible": False,
    }  # fmt: skip


def test_the_experiment_list_marks_experiments_with_simulated_targets(viewer_client, team):
    """An experiment against the simulator carries the "simulated" badge in the list; a real one does not."""
    from django.urls import reverse

    sim = ProviderEndpoint.objects.create(team=team, name="sim", kind="sim")
    real = ProviderEndpoint.objects.create(team=team, name="real", kind="openai_compatible", base_url="http://x/v1")
    experiment_create(team=team, user=None, name="on-sim", targets=[(sim, "a")], prompt="p")
    experiment_create(team=team, user=None, name="on-real", targets=[(real, "b")], prompt="p")
    page = viewer_client.get(reverse("experiments:list")).content.decode()
    rows = {name: row for row in page.split("<tr>") for name in ("on-sim", "on-real") if f">{name}</a>" in row}
    assert 'class="badge simulated"' in rows["on-sim"] and 'class="badge simulated"' not in rows["on-real"]
