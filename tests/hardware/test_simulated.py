"""Simulated runs (the `sim` provider, demo data) never mix with measurements: a field set where they
are made and backfilled for old rows, left out of the grid, prediction and compare unless asked for,
and marked wherever they are shown or exported."""

import csv
import importlib
import io
import json

import pytest
from django.apps import apps as django_apps
from django.db import connection
from django.urls import reverse

from apps.batches.runner import run_sweep
from apps.hardware.demo import DEMO_TOOL, demo_performance_load
from apps.hardware.models import PerformanceRun
from apps.hardware.parsed import ParsedRun, ReportedSummary
from apps.hardware.services import RunTarget, run_store
from tests.batches.test_sweeps import make_sweep
from tests.factories import HardwareProfileFactory, ModelVariantFactory
from tests.hardware.helpers import generated_samples, stored_run

pytestmark = pytest.mark.django_db


@pytest.fixture
def pair(team):
    """A measured run and a simulated one of the same variant, hardware and workload."""
    variant, hardware = ModelVariantFactory(team=team), HardwareProfileFactory(team=team, name="box")
    measured = stored_run(team, variant=variant, hardware=hardware, name="measured run",
                          samples=generated_samples(30, seed=1, ttft_ms=100))  # fmt: skip
    simulated = stored_run(team, variant=variant, hardware=hardware, name="simulated run", is_simulated=True,
                           samples=generated_samples(30, seed=2, ttft_ms=400))  # fmt: skip
    return measured, simulated


def body(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


# --- where the flag is set ------------------------------------------------------------------------


def test_run_store_keeps_the_flag_of_the_parsed_run(team):
    """ParsedRun.is_simulated becomes PerformanceRun.is_simulated; the default is a measurement."""
    assert stored_run(team, is_simulated=True).is_simulated is True
    assert stored_run(team).is_simulated is False


def test_demo_runs_are_simulated(team):
    """The generated demo runs are stored as simulated."""
    from apps.hardware.demo import VARIANTS

    for model_name, quantization, _ in VARIANTS:
        ModelVariantFactory(team=team, model_name=model_name, quantization=quantization)
    assert demo_performance_load(team=team) > 0
    runs = PerformanceRun.objects.filter(team=team, tool=DEMO_TOOL)
    assert runs.exists() and not runs.filter(is_simulated=False).exists()


@pytest.mark.django_db(transaction=True)
def test_a_load_sweep_against_sim_stores_simulated_runs(team):
    """Every step of a sweep against the `sim` endpoint is a simulated run."""
    sweep = make_sweep(team, levels=[1], step_request_count=4)
    run_sweep(sweep.pk)
    run = sweep.steps.get().run
    assert run.is_simulated is True and run.provider == "sim"


def test_the_migration_backfills_sim_demo_and_tagged_runs(team):
    """Old rows: provider "sim", tool "llmbench-demo" or the tag "simulated" become simulated; others stay measured."""
    backfill = importlib.import_module("apps.hardware.migrations.0002_run_is_simulated").backfill
    sim = stored_run(team, provider="sim")
    demo = stored_run(team, tool_version="1", samples=[])
    PerformanceRun.objects.filter(pk=demo.pk).update(tool=DEMO_TOOL)
    tagged = stored_run(team, tags=["load-sweep", "simulated"], samples=[])
    measured = stored_run(team, tags=["load-sweep"], provider="openai", samples=[])
    PerformanceRun.objects.update(is_simulated=False)

    class Editor:
        pass

    editor = Editor()
    editor.connection = connection
    backfill(django_apps, editor)
    flags = dict(PerformanceRun.objects.values_list("pk", "is_simulated"))
    assert flags == {sim.pk: True, demo.pk: True, tagged.pk: True, measured.pk: False}


# --- left out unless asked for --------------------------------------------------------------------


class TestGrid:
    def test_the_grid_leaves_simulated_runs_out_by_default(self, viewer_api, pair):
        """The cell is the measured run alone; with include_simulated=1 both, and the cell says simulated."""
        measured, simulated = pair
        cell = viewer_api.get("/api/v1/performance/grid", {"metric": "ttft_p50_ms"}).json()["cells"][0]
        assert cell["run_ids"] == [measured.pk] and cell["simulated"] is False
        assert cell["value"] == pytest.approx(measured.summary.metrics["ttft_ms"]["p50"])
        both = viewer_api.get("/api/v1/performance/grid", {"metric": "ttft_p50_ms", "include_simulated": "1"}).json()
        assert both["cells"][0]["run_ids"] == sorted([measured.pk, simulated.pk]) and both["cells"][0]["simulated"]
        assert both["include_simulated"] is True

    def test_the_team_setting_flips_the_default_and_the_parameter_wins(self, viewer_api, team, pair):
        """A team that shows simulated results includes them unless ?include_simulated=0."""
        team.show_simulated = True
        team.save()
        cells = viewer_api.get("/api/v1/performance/grid").json()["cells"]
        assert len(cells[0]["run_ids"]) == 2
        cells = viewer_api.get("/api/v1/performance/grid", {"include_simulated": "0"}).json()["cells"]
        assert cells[0]["run_ids"] == [pair[0].pk]

    def test_the_grid_page_has_the_switch_and_marks_simulated_cells(self, viewer_client, pair):
        """The page offers the switch; a cell with a simulated run carries the badge, a measured one does not."""
        page = viewer_client.get(reverse("hardware:grid")).content.decode()
        assert 'name="include_simulated"' in page and 'class="badge simulated"' not in page
        page = viewer_client.get(reverse("hardware:grid"), {"include_simulated": "1"}).content.decode()
        assert 'class="badge simulated"' in page

    def test_only_simulated_runs_leave_an_empty_grid_that_says_why(self, viewer_client, team):
        """A team with only simulated runs sees the empty state telling it how to include them."""
        stored_run(team, is_simulated=True)
        page = viewer_client.get(reverse("hardware:grid")).content.decode()
        assert "Simulated runs are left out" in page


class TestCompare:
    def test_comparing_a_simulated_run_needs_include_simulated(self, viewer_api, pair):
        """The API refuses with a 400 naming `runs`; with include_simulated=1 it compares and marks the run."""
        measured, simulated = pair
        query = {"runs": f"{measured.pk},{simulated.pk}"}
        refused = viewer_api.get("/api/v1/performance/compare", query)
        assert refused.status_code == 400 and f"#{simulated.pk}" in refused.json()["runs"][0]
        body_ = viewer_api.get("/api/v1/performance/compare", {**query, "include_simulated": "1"}).json()
        assert [r["is_simulated"] for r in body_["runs"]] == [False, True]

    def test_the_compare_page_refuses_then_marks_the_simulated_column(self, viewer_client, pair):
        """The page says why (400) by default; included, the simulated run's column has the badge."""
        measured, simulated = pair
        query = {"runs": f"{measured.pk},{simulated.pk}"}
        refused = viewer_client.get(reverse("hardware:compare"), query)
        assert refused.status_code == 400 and b"is simulated" in refused.content
        page = viewer_client.get(reverse("hardware:compare"), {**query, "include_simulated": "1"})
        assert page.status_code == 200 and b'class="badge simulated"' in page.content
        assert b'name="include_simulated"' in page.content

    def test_the_compare_pdf_marks_the_simulated_run(self, viewer_client, pair):
        """The PDF refuses without the switch and names the simulated run "(simulated)" with it."""
        from tests.hardware.test_run_exports import pdf_text

        measured, simulated = pair
        target = reverse("hardware:compare-export-pdf")
        assert viewer_client.get(target, {"runs": f"{measured.pk},{simulated.pk}"}).status_code == 400
        response = viewer_client.get(target, {"runs": f"{measured.pk},{simulated.pk}", "include_simulated": "1"})
        assert f"#{simulated.pk} (simulated)" in pdf_text(body(response))


class TestPrediction:
    def _runs(self, team, *, simulated: bool):
        variant, hardware = ModelVariantFactory(team=team), HardwareProfileFactory(team=team)
        for conc in (1, 2, 4, 8, 16, 32):
            reported = ReportedSummary(metrics={"ttft_ms": {"mean": 30 + conc + conc % 3},
                                                "input_tokens": {"mean": 512}, "output_tokens": {"mean": 128}})  # fmt: skip
            parsed = ParsedRun(source_format="x", concurrency=conc, reported=reported, is_simulated=simulated)
            run_store(team=team, parsed=parsed, target=RunTarget(variant, hardware, None))
        return {"variant": variant.pk, "hardware": hardware.pk, "input_tokens": 512, "output_tokens": 128,
                "concurrency": 10}  # fmt: skip

    def test_the_api_predicts_from_simulated_runs_only_when_asked(self, viewer_api, team):
        """422 by default (no measured runs); with ?include_simulated=1 a prediction that counts them."""
        question = self._runs(team, simulated=True)
        assert viewer_api.post("/api/v1/performance/predict", question, format="json").status_code == 422
        response = viewer_api.post("/api/v1/performance/predict?include_simulated=1", question, format="json")
        assert response.status_code == 200 and response.json()["simulated_runs"] == 6
        assert viewer_api.get("/api/v1/performance/modeling/models").json() == []

    def test_the_page_marks_a_prediction_from_simulated_runs(self, viewer_client, team):
        """The page has the switch; included, it says how many runs were simulated, with the badge."""
        question = self._runs(team, simulated=True)
        page = viewer_client.get(reverse("hardware:predict"), question).content.decode()
        assert "Not enough data" in page and 'name="include_simulated"' in page
        page = viewer_client.get(reverse("hardware:predict"), {**question, "include_simulated": "1"}).content.decode()
        assert "6 of them" in page and 'class="badge simulated"' in page


# --- marked where shown -----------------------------------------------------------------------------


def test_the_runs_list_and_detail_mark_a_simulated_run(viewer_client, pair):
    """The list row has the simulated class (and the measured one not); the detail page has the badge and a note."""
    measured, simulated = pair
    page = viewer_client.get(reverse("hardware:runs")).content.decode()
    assert page.count('<tr class="simulated"') == 1
    detail = viewer_client.get(reverse("hardware:run", args=[simulated.pk])).content.decode()
    assert 'class="badge simulated"' in detail and 'id="simulated-note"' in detail
    plain = viewer_client.get(reverse("hardware:run", args=[measured.pk])).content.decode()
    assert 'class="badge simulated"' not in plain


def test_the_api_exposes_is_simulated(viewer_api, pair):
    """Run list and detail carry is_simulated."""
    measured, simulated = pair
    listing = {r["id"]: r["is_simulated"] for r in viewer_api.get("/api/v1/performance/runs").json()["results"]}
    assert listing == {measured.pk: False, simulated.pk: True}
    assert viewer_api.get(f"/api/v1/performance/runs/{simulated.pk}").json()["is_simulated"] is True


def test_the_api_cannot_set_is_simulated(member_api, pair):
    """is_simulated is read-only: a PATCH cannot launder a simulated run into a measurement."""
    _, simulated = pair
    member_api.patch(f"/api/v1/performance/runs/{simulated.pk}", {"is_simulated": False}, format="json")
    simulated.refresh_from_db()
    assert simulated.is_simulated is True


def test_every_export_line_says_whether_it_is_simulated(viewer_client, pair):
    """CSV: a simulated column on every sample line; JSON and Excel: the meta, the summary and every line."""
    measured, simulated = pair
    rows = list(csv.DictReader(io.StringIO(body(viewer_client.get(reverse("hardware:run-export-csv",
                                                                               args=[simulated.pk]))).decode())))  # fmt: skip
    assert rows and {r["simulated"] for r in rows} == {"true"}
    rows = list(csv.DictReader(io.StringIO(body(viewer_client.get(reverse("hardware:run-export-csv",
                                                                               args=[measured.pk]))).decode())))  # fmt: skip
    assert {r["simulated"] for r in rows} == {"false"}
    data = json.loads(body(viewer_client.get(reverse("hardware:run-export-json", args=[simulated.pk]))))
    assert data["meta"]["simulated"] is True and data["summary"]["Simulated"].startswith("yes")
    assert all(line["simulated"] is True for table in data["tables"].values() for line in table)
