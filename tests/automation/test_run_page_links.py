"""Each run kind's page links to “Repeat on a schedule” for members (not viewers), and the link opens the form for
that run (with the real run kinds)."""

import pytest
from django.urls import reverse

from apps.benchmarks.services import TargetSpec, benchmark_run_create
from apps.experiments.services import experiment_create
from tests.batches.helpers import make_batch, sim_endpoint
from tests.batches.test_sweeps import make_sweep
from tests.benchmarks.test_runner import make_suite
from tests.capacity.helpers import make_search

pytestmark = pytest.mark.django_db


def experiment(team):
    return experiment_create(team=team, user=None, name="nightly", targets=[(sim_endpoint(team), "sim-small")],
                             prompt="Explain caching")  # fmt: skip


def benchmark_run(team):
    endpoint = sim_endpoint(team, model_names=["sim-small"])
    return benchmark_run_create(
        team=team, user=None, suite=make_suite(team), targets=[TargetSpec(endpoint, "sim-small")]
    )


RUNS = {  # kind: (make the run, its page's URL name)
    "experiment": (experiment, "experiments:detail"),
    "parameter_sweep": (lambda team: make_batch(team).experiment, "batches:batch"),
    "load_sweep": (make_sweep, "batches:sweep"),
    "benchmark_run": (benchmark_run, "benchmarks:run-detail"),
    "capacity_search": (make_search, "capacity:detail"),
}


@pytest.mark.parametrize("kind", list(RUNS))
def test_a_members_run_page_links_to_a_schedule_form_for_that_run(member_client, team, kind):
    make, page = RUNS[kind]
    run = make(team)
    html = member_client.get(reverse(page, args=[run.pk])).content.decode()
    link = f'href="/automation/schedules/new?kind={kind}&amp;run={run.pk}" id="schedule-link">Repeat on a schedule</a>'
    assert link in html
    form = member_client.get(f"/automation/schedules/new?kind={kind}&run={run.pk}")
    assert form.status_code == 200 and f"#{run.pk} · " in form.content.decode()


@pytest.mark.parametrize("kind", ["experiment", "capacity_search"])
def test_viewers_do_not_see_the_link(viewer_client, team, kind):
    make, page = RUNS[kind]
    run = make(team)
    assert "Repeat on a schedule" not in viewer_client.get(reverse(page, args=[run.pk])).content.decode()


def test_a_capacity_searchs_own_load_sweep_has_no_link(member_client, team):
    """Its probes' sweep is repeated with the search, not alone."""
    search = make_search(team)
    response = member_client.get(reverse("batches:sweep", args=[search.sweep_id]))
    assert response.status_code == 200 and "Repeat on a schedule" not in response.content.decode()
