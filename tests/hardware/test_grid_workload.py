"""A grid cell is one workload (concurrency or rate, input and output token targets), by default the most
common one of the filtered runs, and the page and API say which."""

import numpy as np
import pytest
from django.urls import reverse

from apps.hardware.models import PerformanceRun
from apps.hardware.selectors import Workload, performance_grid
from tests.factories import HardwareProfileFactory, ModelVariantFactory
from tests.hardware.helpers import generated_samples, stored_run

pytestmark = pytest.mark.django_db


@pytest.fixture
def mixed(team):
    """One variant on one box at two workloads: twice c1 (fast), once c64 (slow)."""
    variant, hardware = ModelVariantFactory(team=team), HardwareProfileFactory(team=team)

    def run(concurrency, seed, ttft_ms, **fields):
        return stored_run(team, variant=variant, hardware=hardware, concurrency=concurrency,
                          input_tokens_target=256, output_tokens_target=128,
                          samples=generated_samples(20, seed=seed, ttft_ms=ttft_ms), **fields)  # fmt: skip

    return {"c1": [run(1, 1, 50), run(1, 2, 55)], "c64": [run(64, 3, 900)]}


def test_the_default_cell_is_the_most_common_workload_not_an_average_of_all(team, mixed):
    """Two c=1 runs and one c=64 run: the cell is the mean of the c=1 runs only, and the grid says so."""
    grid = performance_grid(team=team, metric="ttft_p50_ms")
    (cell,) = grid.cells.values()
    expected = np.mean([r.summary.metrics["ttft_ms"]["p50"] for r in mixed["c1"]])
    assert cell.value == pytest.approx(expected) and cell.run_ids == sorted(r.pk for r in mixed["c1"])
    assert grid.workload == Workload(1, None, 256, 128) and not grid.workload_chosen
    assert [(w.key, n) for w, n in grid.workloads] == [("c1-in256-out128", 2), ("c64-in256-out128", 1)]


def test_a_chosen_workload_shows_only_its_runs(team, mixed):
    """workload=c64-in256-out128 shows the c=64 run alone."""
    grid = performance_grid(team=team, metric="ttft_p50_ms", workload=Workload.from_key("c64-in256-out128"))
    assert [c.run_ids for c in grid.cells.values()] == [[mixed["c64"][0].pk]] and grid.workload_chosen


def test_an_open_loop_workload_is_one_too(team):
    """Runs at a request rate form their own workload, matched on the rate."""
    variant, hardware = ModelVariantFactory(team=team), HardwareProfileFactory(team=team)
    rated = stored_run(team, variant=variant, hardware=hardware, concurrency=None, request_rate_rps=2.5)
    stored_run(team, variant=variant, hardware=hardware, concurrency=4)
    workload = Workload.from_key("r2.5")
    assert workload == Workload(None, 2.5, None, None) and workload.key == "r2.5"
    grid = performance_grid(team=team, metric="ttft_p50_ms", workload=workload)
    assert [c.run_ids for c in grid.cells.values()] == [[rated.pk]]
    assert "2.50 requests/s" in workload.label


@pytest.mark.parametrize("key", ["c16-in256-out128", "r0.25-in512-out64", "c8", "in100-out10", "any"])
def test_a_workload_key_reads_back(key):
    """Every key the grid writes is read back to the same workload."""
    assert Workload.from_key(key).key == key


def test_the_label_speaks_words_and_whole_numbers():
    """Concurrency 16, not 16.0; thousands separators on token counts."""
    assert Workload(16, None, 1024, 256).label == "concurrency 16, 1,024 input / 256 output tokens"


class TestApi:
    def test_the_answer_names_the_workload_and_lists_the_others(self, viewer_api, mixed):
        """`workload` is the shown one with its run count and default flag; `workloads` lists every key."""
        body = viewer_api.get("/api/v1/performance/grid", {"metric": "ttft_p50_ms"}).json()
        assert body["workload"]["key"] == "c1-in256-out128" and body["workload"]["default"] is True
        assert body["workload"]["run_count"] == 2 and body["workload"]["label"].startswith("concurrency 1,")
        assert [w["key"] for w in body["workloads"]] == ["c1-in256-out128", "c64-in256-out128"]
        assert sorted(body["cells"][0]["run_ids"]) == sorted(r.pk for r in mixed["c1"])

    def test_a_chosen_workload(self, viewer_api, mixed):
        """?workload= picks the cell's workload."""
        body = viewer_api.get("/api/v1/performance/grid", {"workload": "c64-in256-out128"}).json()
        assert body["cells"][0]["run_ids"] == [mixed["c64"][0].pk] and body["workload"]["default"] is False

    def test_a_bad_workload_is_400_naming_the_field(self, viewer_api, mixed):
        """A key that is not a workload is a 400 on `workload`."""
        response = viewer_api.get("/api/v1/performance/grid", {"workload": "sixteen"})
        assert response.status_code == 400 and "workload" in response.json()

    def test_the_workload_parameter_is_in_the_schema(self, viewer_api):
        """OpenAPI declares workload and include_simulated on the grid."""
        schema = viewer_api.get("/api/schema/", {"format": "json"}).json()
        names = {p["name"] for p in schema["paths"]["/api/v1/performance/grid"]["get"]["parameters"]}
        assert {"workload", "include_simulated"} <= names


class TestPage:
    def test_the_page_says_which_workload_it_shows(self, viewer_client, mixed):
        """The sentence above the grid names the workload and how many runs it has of how many."""
        page = viewer_client.get(reverse("hardware:grid")).content.decode()
        assert "Workload: concurrency 1, 256 input / 128 output tokens" in page
        assert "2 of 3 runs" in page and 'value="c64-in256-out128"' in page

    def test_a_bad_workload_is_400(self, viewer_client, mixed):
        """The page answers 400 and names the problem."""
        response = viewer_client.get(reverse("hardware:grid"), {"workload": "fast"})
        assert response.status_code == 400 and b"Not a workload" in response.content

    def test_htmx_updates_the_workload_choices_out_of_band(self, viewer_client, mixed):
        """The partial carries the workload select for an out-of-band swap, since filters change the choices."""
        response = viewer_client.get(
            reverse("hardware:grid"), {"metric": "ttft_p50_ms"}, headers={"HX-Request": "true"}
        )
        content = response.content.decode()
        assert response.status_code == 200 and "<html" not in content
        assert 'id="workload-field" hx-swap-oob="true"' in content and 'value="c64-in256-out128"' in content

    def test_a_cell_links_to_its_runs_with_the_workload(self, viewer_client, mixed):
        """The cell's link filters the runs list to the same workload."""
        page = viewer_client.get(reverse("hardware:grid")).content.decode()
        assert "concurrency=1&amp;input_tokens=256&amp;output_tokens=128" in page
        listing = viewer_client.get(reverse("hardware:runs"), {"concurrency": 1, "input_tokens": 256,
                                                               "output_tokens": 128}).content.decode()  # fmt: skip
        assert listing.count('name="run"') == 2


def test_the_grid_stays_fast_in_queries(viewer_api, team, django_assert_max_num_queries):
    """Workloads, cells, variant and hardware names: a fixed number of queries whatever the run count."""
    for concurrency in (1, 1, 2, 4, 8):
        stored_run(team, concurrency=concurrency, samples=[])
    with django_assert_max_num_queries(6):
        assert viewer_api.get("/api/v1/performance/grid").status_code == 200
    assert PerformanceRun.objects.count() == 5
