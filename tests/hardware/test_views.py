"""Performance pages: grid, runs, run detail (SLO, CSV, delete), compare, predict, upload."""

import csv
import io
import json

import pytest
from django.urls import reverse

from apps.hardware.models import PerformanceRun
from apps.hardware.parsed import ParsedSample
from tests.factories import HardwareProfileFactory
from tests.hardware.helpers import generated_samples, stored_run
from tests.hardware.test_api import llmbench_json

pytestmark = pytest.mark.django_db


@pytest.fixture
def own(team):
    return stored_run(team, name="own run")


@pytest.fixture
def foreign(other_team):
    return stored_run(other_team, name="secret run")


class TestGridPage:
    def test_it_shows_the_teams_cells(self, viewer_client, own, foreign):
        response = viewer_client.get(reverse("hardware:grid"), {"metric": "ttft_p95_ms"})
        assert response.status_code == 200
        assert own.hardware.name.encode() in response.content and foreign.hardware.name.encode() not in response.content
        assert f"{own.summary.metrics['ttft_ms']['p95']:,.2f}".encode() in response.content

    def test_htmx_gets_the_partial(self, viewer_client, own):
        response = viewer_client.get(reverse("hardware:grid"), headers={"HX-Request": "true"})
        assert b'id="results"' in response.content and b"<html" not in response.content

    def test_an_unknown_metric_is_400(self, viewer_client):
        assert viewer_client.get(reverse("hardware:grid"), {"metric": "nope"}).status_code == 400

    def test_empty_state(self, member_client):
        assert b"No performance runs" in member_client.get(reverse("hardware:grid")).content

    def test_anonymous_is_redirected(self, client):
        assert client.get(reverse("hardware:grid")).status_code == 302


class TestRunListLayout:
    def test_key_columns_come_first_and_the_rest_collapse(self, viewer_client, own):
        """Run, model, hardware, concurrency, output tok/s, TTFT, TPOT first; engine, rate, requests, errors, tool
        are secondary behind the columns toggle; the table keeps its first column in view."""
        page = viewer_client.get(reverse("hardware:runs")).content.decode()
        assert '<div class="table-wrap sticky-first"><table class="numeric" id="runs-table">' in page
        assert 'class="columns-toggle"' in page
        head = page[page.index('id="runs-table"') : page.index("</thead>")]
        order = ["Run", "Model variant", "Hardware", "Concurrency", "Output tok/s", "TTFT p50 ms", "TPOT mean ms",
                 "Engine", "Request rate (req/s)", "Requests", "Errors", "Tool"]  # fmt: skip
        positions = [head.index(f">{text}</th>") for text in order]
        assert positions == sorted(positions)
        for text in order[7:]:
            assert f'<th class="secondary">{text}</th>' in head

    def test_concurrency_is_a_whole_number(self, viewer_client, team):
        """Concurrency 16 reads "16", never "16.0"; request counts get thousands separators."""
        stored_run(team, concurrency=16, samples=generated_samples(1200, failures=0))
        page = viewer_client.get(reverse("hardware:runs")).content.decode()
        assert "<td>16</td>" in page and "16.0" not in page and "1,200" in page


class TestRunPages:
    def test_list_filters_and_stays_in_the_team(self, viewer_client, own, foreign):
        content = viewer_client.get(reverse("hardware:runs")).content
        assert b"own run" in content and b"secret run" not in content

    def test_detail_shows_the_summary_and_charts(self, viewer_client, own):
        response = viewer_client.get(reverse("hardware:run", args=[own.pk]))
        assert response.status_code == 200
        assert b'id="summary-table"' in response.content and b'data-chart="histogram"' in response.content
        assert b"48, 2 failed" not in response.content and b"50</strong>, 2 failed" in response.content

    def test_detail_of_another_teams_run_is_404(self, viewer_client, foreign):
        assert viewer_client.get(reverse("hardware:run", args=[foreign.pk])).status_code == 404

    def test_a_member_sets_the_slo(self, member_client, own):
        response = member_client.post(reverse("hardware:run", args=[own.pk]), {"slo_ttft_ms": "500"})
        assert response.status_code == 302
        own.summary.refresh_from_db()
        assert own.summary.goodput_slo == {"ttft_ms": 500.0}

    def test_a_bad_slo_is_400(self, member_client, own):
        response = member_client.post(reverse("hardware:run", args=[own.pk]), {"slo_ttft_ms": "soon"})
        assert response.status_code == 400

    def test_a_viewer_cannot_set_the_slo(self, viewer_client, own):
        assert viewer_client.post(reverse("hardware:run", args=[own.pk]), {"slo_ttft_ms": "1"}).status_code == 403

    def test_samples_csv_has_every_sample_and_neutralizes_formulas(self, viewer_client, team):
        samples = generated_samples(5, failures=1)
        samples[-1].error_message = '=HYPERLINK("http://evil")'
        run = stored_run(team, samples=samples)
        response = viewer_client.get(reverse("hardware:run-samples-csv", args=[run.pk]))
        rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
        assert len(rows) == 6 and rows[0][0] == "index"
        assert rows[-1][2].startswith("'=") and rows[-1][1] == "429"
        assert float(rows[1][3]) == pytest.approx(samples[0].ttft_ms, rel=1e-9)

    def test_samples_csv_of_another_team_is_404(self, viewer_client, foreign):
        assert viewer_client.get(reverse("hardware:run-samples-csv", args=[foreign.pk])).status_code == 404

    def test_delete(self, member_client, own, foreign):
        assert member_client.post(reverse("hardware:run-delete", args=[foreign.pk])).status_code == 404
        assert member_client.post(reverse("hardware:run-delete", args=[own.pk])).status_code == 302
        assert not PerformanceRun.objects.filter(pk=own.pk).exists()

    def test_a_viewer_cannot_delete(self, viewer_client, own):
        assert viewer_client.post(reverse("hardware:run-delete", args=[own.pk])).status_code == 403

    def test_anonymous_is_redirected(self, client, own):
        assert client.get(reverse("hardware:run", args=[own.pk])).status_code == 302


class TestComparePage:
    def test_it_compares_two_runs(self, viewer_client, team, own):
        other = stored_run(team, samples=generated_samples(50, seed=9, ttft_ms=200))
        response = viewer_client.get(reverse("hardware:compare"), {"runs": f"{own.pk},{other.pk}"})
        assert response.status_code == 200
        assert b'id="significance-table"' in response.content and b"significant" in response.content
        assert b'data-chart="radar"' in response.content

    def test_p_values_print_in_words_and_the_method_is_stated(self, viewer_client, team, own):
        """A tiny p-value reads "< 0.001" (never 0 or 0.0000); the page says tests use one value per request."""
        other = stored_run(team, samples=generated_samples(50, seed=4, ttft_ms=300))
        page = viewer_client.get(reverse("hardware:compare"), {"runs": f"{own.pk},{other.pk}"}).content.decode()
        assert "&lt; 0.001" in page and "0.0000" not in page
        assert "one value per successful request" in page and "ITL (mean per request)" in page

    def test_another_teams_run_is_404(self, viewer_client, own, foreign):
        assert viewer_client.get(reverse("hardware:compare"), {"runs": f"{own.pk},{foreign.pk}"}).status_code == 404

    def test_bad_input_is_400(self, viewer_client, own):
        response = viewer_client.get(reverse("hardware:compare"), {"runs": str(own.pk)})
        assert response.status_code == 400 and b"two to four" in response.content

    def test_without_a_question_it_explains(self, viewer_client):
        assert b"Pick two to four runs" in viewer_client.get(reverse("hardware:compare")).content


class TestPredictPage:
    def test_it_explains_missing_data(self, viewer_client, own):
        params = {"variant": own.variant_id, "hardware": own.hardware_id, "input_tokens": 100, "output_tokens": 10,
                  "concurrency": 4}  # fmt: skip
        response = viewer_client.get(reverse("hardware:predict"), params)
        assert response.status_code == 200 and b"Not enough data" in response.content

    def test_bad_input_is_400(self, viewer_client, foreign):
        response = viewer_client.get(reverse("hardware:predict"), {"variant": foreign.variant_id})
        assert response.status_code == 400

    def test_anonymous_is_redirected(self, client):
        assert client.get(reverse("hardware:predict")).status_code == 302


class TestUploadPage:
    URL = reverse("hardware:upload")

    def test_preview_writes_nothing(self, member_client):
        response = member_client.post(
            self.URL, {"file": llmbench_json(), "preview": "1"}, headers={"HX-Request": "true"}
        )
        assert response.status_code == 200 and b"1 run(s)" in response.content
        assert not PerformanceRun.objects.exists()

    def test_upload_stores_and_opens_the_run(self, member_client):
        response = member_client.post(self.URL, {"file": llmbench_json()})
        run = PerformanceRun.objects.get()
        assert response.status_code == 302 and response["Location"] == reverse("hardware:run", args=[run.pk])

    def test_the_preview_says_a_vllm_burst_was_read_as_concurrency(self, member_client, team):
        """A vLLM file at --request-rate inf without max_concurrency previews as a burst of its prompts."""
        from django.core.files.uploadedfile import SimpleUploadedFile

        from tests.hardware.files import VllmRequest, vllm_result

        doc = vllm_result([VllmRequest(start=81234.0 + i / 100) for i in range(3)], request_rate="inf",
                          max_concurrency=None, num_prompts=3)  # fmt: skip
        upload = SimpleUploadedFile("vllm.json", json.dumps(doc).encode(), content_type="application/json")
        form = {
            "file": upload,
            "preview": "1",
            "quantization": "BF16",
            "hardware": HardwareProfileFactory(team=team).pk,
        }
        response = member_client.post(self.URL, form, headers={"HX-Request": "true"})
        content = response.content.decode()
        assert response.status_code == 200, content
        assert "read as a burst" in content and "all 3 prompts were sent at once" in content
        assert '<span class="badge">burst</span>' in content

    def test_a_bad_file_is_400_naming_rows(self, member_client):
        response = member_client.post(self.URL, {"file": llmbench_json(quantization="", hardware=None)})
        assert response.status_code == 400 and b"hardware" in response.content
        assert not PerformanceRun.objects.exists()

    def test_a_viewer_cannot_upload(self, viewer_client):
        assert viewer_client.post(self.URL, {"file": llmbench_json()}).status_code == 403

    def test_anonymous_is_redirected(self, client):
        assert client.post(self.URL, {"file": llmbench_json()}).status_code == 302


def test_failed_request_without_latency_is_fine_in_detail(viewer_client, team):
    run = stored_run(team, samples=[ParsedSample(index=0, error_code="timeout")])
    response = viewer_client.get(reverse("hardware:run", args=[run.pk]))
    assert response.status_code == 200 and b"timeout" in response.content


def test_deleting_a_variant_with_runs_keeps_the_runs_and_says_why(member_client, own):
    response = member_client.post(reverse("scores:variant-delete", args=[own.variant_id]), follow=True)
    assert response.status_code == 200 and b"1 performance run(s); delete those first" in response.content
    assert PerformanceRun.objects.filter(pk=own.pk).exists()
