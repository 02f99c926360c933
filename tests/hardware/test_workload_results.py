"""Workload runs (issue 13): the new sample columns stored and read back (COPY on PostgreSQL, executemany on
SQLite), the steady-window summary beside the whole-step figures, per-turn, session, reasoning, cached-token and
requested-vs-delivered figures on hand-computed sample sets, and the same figures on the run page, in the API and
in the exports."""

import csv
import io
import json

import openpyxl
import pytest
from django.db import connection
from django.db.models import ProtectedError
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from apps.hardware.exports import SAMPLE_COLUMNS
from apps.hardware.models import RequestSample
from apps.hardware.parsed import ParsedRun, ParsedSample
from apps.hardware.services import RunTarget, run_store, run_summary_compute
from apps.hardware.stats import WORKLOAD_FIELDS
from apps.workloads.models import Workload, WorkloadVersion
from tests.factories import ModelVariantFactory
from tests.hardware.helpers import generated_samples, stored_run

pytestmark = pytest.mark.django_db

WARMUP, RAMP, STEADY, DRAIN = 1, 2, 0, 3


def store(team, samples, **run_fields):
    parsed = ParsedRun(source_format="llmbench_live", tool="llmbench", concurrency=2, samples=samples, **run_fields)
    return run_store(team=team, parsed=parsed, target=RunTarget(ModelVariantFactory(team=team), None, None))


def ok(index, ttft, e2e, start, phase=None, **fields):
    fields.setdefault("input_tokens", 10)
    fields.setdefault("output_tokens", 10)
    return ParsedSample(index=index, ttft_ms=ttft, e2e_ms=e2e, start_offset_ms=start, phase=phase, **fields)


def phased_samples():
    """Warm-up, ramp-up, three steady successes, a drain and a steady failure (see the test for the numbers)."""
    return [
        ok(0, 500.0, 1000.0, 0.0, WARMUP),
        ok(1, 300.0, 800.0, 0.0, RAMP),
        ok(2, 100.0, 400.0, 100.0, STEADY),
        ok(3, 200.0, 600.0, 200.0, STEADY),
        ok(4, 300.0, 800.0, 300.0, STEADY),
        ok(5, 400.0, 900.0, 400.0, DRAIN),
        ParsedSample(index=6, error_code="http_500", error_message="boom", start_offset_ms=500.0, phase=STEADY),
    ]


def conversation_samples():
    """Three sessions: 0 has two good turns, 1 a good turn then a failed one, 2 a single turn.

    Lengths: requested vs delivered input 100/100, 250/300, 100/110, 100/90 (errors 0, +20, +10, −10 %);
    output 10/10, 20/20, 30/30, 40/36 (0, 0, 0, −10 %). Cached tokens: None, 64, 30, None (None = not reported).
    Reasoning: the first request thought for 40 tokens and its first output token came at 300 ms."""

    def turn(index, session, t, ttft, e2e, start, req_in, delivered_in, req_out, out, cached, **fields):
        return ParsedSample(
            index=index, ttft_ms=ttft, e2e_ms=e2e, start_offset_ms=start, session_index=session, turn_index=t,
            requested_input_tokens=req_in, input_tokens=delivered_in, requested_output_tokens=req_out,
            output_tokens=out, cached_tokens=cached, phase=STEADY, **fields,
        )  # fmt: skip

    return [
        turn(0, 0, 0, 100.0, 500.0, 0.0, 100, 100, 10, 10, None, reasoning_tokens=40, ttfot_ms=300.0),
        turn(1, 1, 0, 120.0, 520.0, 100.0, 100, 110, 30, 30, 30, ttfot_ms=120.0),
        turn(2, 2, 0, 110.0, 400.0, 200.0, 100, 90, 40, 36, None, ttfot_ms=110.0),
        turn(3, 0, 1, 150.0, 600.0, 1000.0, 250, 300, 20, 20, 64, reasoning_tokens=0, ttfot_ms=150.0),
        ParsedSample(index=4, error_code="timeout", session_index=1, turn_index=1, start_offset_ms=2000.0,
                     requested_input_tokens=500, requested_output_tokens=50, phase=STEADY),
    ]  # fmt: skip


def every_column_sample(index: int) -> ParsedSample:
    return ParsedSample(
        index=index, ttft_ms=12.5, e2e_ms=80.25, input_tokens=100 + index, output_tokens=20, itl_ms=[1.5, 2.5],
        start_offset_ms=3.0 * index, session_index=7 + index, turn_index=2, requested_input_tokens=99,
        requested_output_tokens=21, cached_tokens=64, reasoning_tokens=5, ttfot_ms=40.75, phase=index % 4,
    )  # fmt: skip


class TestStorage:
    def test_every_new_column_round_trips(self, team):
        """Each workload column is stored as given (the COPY path when DATABASE_URL is PostgreSQL)."""
        samples = [every_column_sample(i) for i in range(4)] + [ParsedSample(index=4, ttft_ms=1.0, e2e_ms=2.0)]
        run = store(team, samples)
        stored = list(RequestSample.objects.filter(run=run).order_by("index").values_list(*WORKLOAD_FIELDS))
        assert stored[:4] == [(7 + i, 2, 99, 21, 64, 5, 40.75, i % 4) for i in range(4)]
        assert stored[4] == (None,) * len(WORKLOAD_FIELDS)  # missing stays NULL, never 0

    def test_the_run_keeps_its_workload_version_and_calibration(self, team):
        version = workload_version(team)
        calibration = {"method": "probe", "tokens_per_word": 1.3, "overhead_tokens": 7.0, "r2": 0.99}
        run = store(team, conversation_samples(), workload_version_id=version.pk, token_calibration=calibration)
        run.refresh_from_db()
        assert run.workload_version == version and run.token_calibration == calibration

    def test_an_imported_run_has_no_workload_figures(self, team):
        """Samples without any workload column: the summary's keys and the run's fields are as before."""
        run = stored_run(team, samples=generated_samples(10))
        run.refresh_from_db()
        assert run.workload_version is None and run.token_calibration is None and run.length_report is None
        assert set(run.summary.metrics) == {
            "ttft_ms", "itl_ms", "tpot_ms", "e2e_ms", "output_tps", "input_tokens", "output_tokens",
        }  # fmt: skip

    def test_the_version_cannot_be_deleted_under_a_run(self, team):
        version = workload_version(team)
        store(team, conversation_samples(), workload_version_id=version.pk)
        with pytest.raises(ProtectedError):
            version.delete()


def workload_version(team, name="chat traffic", number=3):
    workload = Workload.objects.create(team=team, name=name)
    return WorkloadVersion.objects.create(workload=workload, number=number, spec={"source": "synthetic"},
                                          spec_sha256="0" * 64)  # fmt: skip


class TestSteadyWindow:
    def test_the_top_level_is_the_steady_window_and_whole_step_every_sample(self, team):
        """Steady: TTFT 100, 200, 300 and one failure over 1.0 s; whole step: six successes and 1.3 s."""
        summary = store(team, phased_samples()).summary
        metrics = summary.metrics
        assert (summary.request_count, summary.error_count) == (4, 1)
        assert metrics["ttft_ms"]["count"] == 3
        assert metrics["ttft_ms"]["mean"] == pytest.approx(200.0)
        assert metrics["ttft_ms"]["p90"] == pytest.approx(280.0)
        assert metrics["ttft_ms"]["p99"] == pytest.approx(298.0)
        assert metrics["e2e_ms"]["p50"] == pytest.approx(600.0)
        # Sends at 100, 200, 300 ms, last end 300 + 800 = 1100 ms: the window is 1.0 s.
        assert summary.duration_s == pytest.approx(1.0)
        assert summary.request_throughput_rps == pytest.approx(3.0)
        whole = metrics["whole_step"]
        assert (whole["request_count"], whole["error_count"]) == (7, 1)
        assert whole["ttft_ms"]["count"] == 6
        assert whole["ttft_ms"]["mean"] == pytest.approx(300.0)  # (500+300+100+200+300+400)/6
        assert whole["ttft_ms"]["p50"] == pytest.approx(300.0)
        assert whole["duration_s"] == pytest.approx(1.3)  # 0 ms to 400 + 900 ms
        assert whole["request_throughput_rps"] == pytest.approx(6 / 1.3)
        assert metrics["phases"] == {"steady": 4, "warmup": 1, "ramp": 1, "drain": 1}
        assert "window_note" not in metrics

    def test_without_a_steady_sample_it_falls_back_to_everything_after_the_warm_up(self, team):
        samples = [ok(0, 900.0, 1000.0, 0.0, WARMUP), ok(1, 100.0, 200.0, 0.0, RAMP), ok(2, 300.0, 400.0, 50.0, DRAIN)]
        summary = store(team, samples).summary
        assert summary.request_count == 2
        assert summary.metrics["ttft_ms"]["mean"] == pytest.approx(200.0)
        assert "after the warm-up" in summary.metrics["window_note"]
        assert summary.metrics["whole_step"]["ttft_ms"]["mean"] == pytest.approx(1300.0 / 3)

    def test_a_steady_window_under_half_the_step_falls_back_and_says_so(self, team):
        """8 requests at 4 streams: most ran in the ramp or the drain; the figures would rest on one request."""
        samples = [ok(0, 100.0, 200.0, 0.0, STEADY)] + [ok(i, 300.0, 400.0, 0.0, DRAIN) for i in range(1, 4)]
        summary = store(team, samples).summary
        assert summary.request_count == 4 and summary.metrics["ttft_ms"]["mean"] == pytest.approx(250.0)
        assert summary.metrics["window_note"].startswith("Only 1 of the 4 requests after the warm-up")

    def test_only_warm_up_samples_use_all_of_them_and_say_so(self, team):
        summary = store(team, [ok(0, 100.0, 200.0, 0.0, WARMUP), ok(1, 300.0, 400.0, 0.0, WARMUP)]).summary
        assert summary.request_count == 2 and summary.metrics["ttft_ms"]["mean"] == pytest.approx(200.0)
        assert "warm-up" in summary.metrics["window_note"]

    @pytest.mark.parametrize("samples", [phased_samples, lambda: workload_run_samples()], ids=["phases", "turns"])
    def test_the_recomputed_summary_equals_the_stored_one(self, team, samples):
        """run_summary_compute reads the workload columns back from the database and gets the same figures."""
        run = store(team, samples())
        stored = dict(run.summary.metrics)
        assert {"phases", "whole_step"} <= stored.keys()
        assert run_summary_compute(run=run).metrics == stored

    def test_imported_runs_without_phases_keep_every_sample(self, team):
        summary = store(team, [ok(0, 100.0, 200.0, 0.0), ok(1, 300.0, 400.0, 0.0)]).summary
        assert summary.request_count == 2 and "whole_step" not in summary.metrics and "phases" not in summary.metrics


class TestWorkloadFigures:
    @pytest.fixture
    def run(self, team):
        return store(team, conversation_samples())

    def test_by_turn(self, run):
        by_turn = run.summary.metrics["by_turn"]
        assert set(by_turn) == {"0", "1"}
        first = by_turn["0"]
        assert (first["count"], first["failed"]) == (3, 0)
        assert first["ttft_ms"] == pytest.approx({"p50": 110.0, "p90": 118.0, "p99": 119.8})
        assert first["e2e_ms"]["p50"] == pytest.approx(500.0)
        assert first["input_tokens_mean"] == pytest.approx(100.0)
        assert first["cached_tokens_mean"] == pytest.approx(30.0)  # one report of 30; the two NULLs are not zeros
        second = by_turn["1"]
        assert (second["count"], second["failed"]) == (2, 1)
        assert second["ttft_ms"] == pytest.approx({"p50": 150.0, "p90": 150.0, "p99": 150.0})
        assert second["input_tokens_mean"] == pytest.approx(300.0) and second["cached_tokens_mean"] == 64.0

    def test_sessions(self, run):
        """Durations 1.6 s (0 → 1000 + 600), 0.52 s (100 → 620; the failed turn has no end), 0.4 s."""
        sessions = run.summary.metrics["sessions"]
        assert {k: sessions[k] for k in ("count", "completed", "aborted")} == {"count": 3, "completed": 2, "aborted": 1}
        assert sessions["turns_mean"] == pytest.approx(5 / 3)
        assert sessions["duration_s"] == pytest.approx({"p50": 0.52, "p90": 1.384})

    def test_reasoning(self, run):
        reasoning = run.summary.metrics["reasoning"]
        assert reasoning["ttfot_ms"] == pytest.approx({"p50": 135.0, "p90": 255.0, "p99": 295.5})
        assert reasoning["reasoning_tokens_mean"] == pytest.approx(20.0)  # 40 and 0; two requests did not say
        assert reasoning["output_tokens_mean"] == pytest.approx(24.0)  # 10, 30, 36, 20

    def test_cached_tokens_leave_out_requests_that_did_not_report(self, run):
        assert run.summary.metrics["cached_tokens"] == pytest.approx(
            {"reported": 2, "mean": 47.0, "share_of_input": 94 / 410}
        )

    def test_cached_tokens_not_reported_at_all(self, team):
        samples = [ok(0, 100.0, 200.0, 0.0, STEADY, turn_index=0), ok(1, 100.0, 200.0, 0.0, STEADY, turn_index=0)]
        metrics = store(team, samples).summary.metrics
        assert metrics["cached_tokens"] == {"reported": 0, "mean": None, "share_of_input": None}
        assert metrics["by_turn"]["0"]["cached_tokens_mean"] is None
        assert "reasoning" not in metrics and "sessions" not in metrics

    def test_length_report(self, run):
        """Input errors 0, +20, +10, −10 %; output 0, 0, 0, −10 %; the failed request is left out."""
        assert run.length_report == {
            "input": {"n": 4, "mean_signed_pct": pytest.approx(5.0), "p99_abs_pct": pytest.approx(19.7)},
            "output": {"n": 4, "mean_signed_pct": pytest.approx(-2.5), "p99_abs_pct": pytest.approx(9.7)},
        }

    def test_figures_of_the_steady_window_leave_out_other_phases(self, team):
        """A warm-up turn's slow TTFT is in whole_step's per-turn figures, not in the top level's."""
        samples = [ok(0, 1000.0, 2000.0, 0.0, WARMUP, turn_index=0), ok(1, 100.0, 200.0, 10.0, STEADY, turn_index=0)]
        metrics = store(team, samples).summary.metrics
        assert metrics["by_turn"]["0"]["ttft_ms"]["p99"] == pytest.approx(100.0)
        assert metrics["whole_step"]["by_turn"]["0"]["count"] == 2


def workload_run_samples():
    return [ok(90, 900.0, 1900.0, 0.0, WARMUP, turn_index=0, session_index=9), *conversation_samples()]


def workload_run(team):
    version = workload_version(team)
    calibration = {"method": "probe", "tokens_per_word": 1.25, "overhead_tokens": 7.0}
    return store(team, workload_run_samples(), workload_version_id=version.pk, token_calibration=calibration)


class TestRunPage:
    def test_it_shows_the_workload_blocks(self, viewer_client, team):
        run = workload_run(team)
        response = viewer_client.get(reverse("hardware:run", args=[run.pk]))
        assert response.status_code == 200
        page = response.content.decode()
        assert 'id="workload-link"' in page and "chat traffic version 3" in page
        assert f'href="/workloads/{run.workload_version.workload_id}/"' in page
        assert "1.25 tokens per word" in page
        for block in ("length-table", "turn-table", "session-figures", "reasoning-table", "cached-figures",
                      "steady-window", "whole-step"):  # fmt: skip
            assert f'id="{block}"' in page, block
        assert "over the steady window" in page
        assert "Time to first output token" in page
        assert "cut short by a failed turn" in page

    def test_no_cached_token_report_says_so(self, viewer_client, team):
        run = store(team, [ok(0, 100.0, 200.0, 0.0, STEADY, turn_index=0)])
        page = viewer_client.get(reverse("hardware:run", args=[run.pk])).content.decode()
        assert "not reported by the server" in page

    def test_the_fallback_is_explained(self, viewer_client, team):
        run = store(team, [ok(0, 900.0, 1000.0, 0.0, WARMUP), ok(1, 100.0, 200.0, 0.0, DRAIN)])
        page = viewer_client.get(reverse("hardware:run", args=[run.pk])).content.decode()
        assert "Only 0 of the 1 requests after the warm-up ran in the steady window" in page

    def test_an_imported_run_hides_them(self, viewer_client, team):
        run = stored_run(team, samples=generated_samples(10))
        page = viewer_client.get(reverse("hardware:run", args=[run.pk])).content.decode()
        for block in ("workload-link", "length-table", "turn-table", "session-figures", "reasoning-table",
                      "cached-figures", "steady-window", "whole-step", "length-method"):  # fmt: skip
            assert f'id="{block}"' not in page, block


class TestApi:
    def test_the_run_detail_carries_the_workload(self, viewer_api, team):
        run = workload_run(team)
        body = viewer_api.get(f"/api/v1/performance/runs/{run.pk}").json()
        version = run.workload_version
        assert body["workload_version"] == {"id": version.pk, "workload_id": version.workload_id,
                                            "workload_name": "chat traffic", "number": 3}  # fmt: skip
        assert body["token_calibration"]["method"] == "probe"
        assert body["length_report"]["input"]["n"] == 4
        metrics = body["summary"]["metrics"]
        assert metrics["phases"] == {"steady": 5, "warmup": 1, "ramp": 0, "drain": 0}
        assert {"by_turn", "sessions", "reasoning", "cached_tokens", "whole_step"} <= metrics.keys()

    def test_an_imported_run_has_nulls(self, viewer_api, team):
        run = stored_run(team, samples=generated_samples(5))
        body = viewer_api.get(f"/api/v1/performance/runs/{run.pk}").json()
        assert (body["workload_version"], body["token_calibration"], body["length_report"]) == (None, None, None)

    def test_the_list_stays_as_it_was(self, viewer_api, team):
        workload_run(team)
        row = viewer_api.get("/api/v1/performance/runs").json()["results"][0]
        assert "workload_version" not in row and "length_report" not in row

    def test_the_calibration_is_read_only(self, member_api, team):
        run = workload_run(team)
        response = member_api.patch(
            f"/api/v1/performance/runs/{run.pk}",
            {"token_calibration": {"method": "x"}, "name": "renamed"},
            format="json",
        )
        assert response.status_code == 200
        run.refresh_from_db()
        assert run.name == "renamed" and run.token_calibration["method"] == "probe"

    def test_samples_carry_the_new_columns(self, viewer_api, team):
        run = store(team, [every_column_sample(1)])
        sample = viewer_api.get(f"/api/v1/performance/runs/{run.pk}/samples").json()["results"][0]
        assert {name: sample[name] for name in WORKLOAD_FIELDS} == {
            "session_index": 8, "turn_index": 2, "requested_input_tokens": 99, "requested_output_tokens": 21,
            "cached_tokens": 64, "reasoning_tokens": 5, "ttfot_ms": 40.75, "phase": 1,
        }  # fmt: skip


class TestExports:
    def test_csv_has_the_new_columns(self, viewer_client, team):
        run = store(team, [every_column_sample(1), ParsedSample(index=2, ttft_ms=1.0, e2e_ms=2.0)])
        response = viewer_client.get(reverse("hardware:run-export-csv", args=[run.pk]))
        rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
        assert rows[0] == SAMPLE_COLUMNS
        first = dict(zip(rows[0], rows[1], strict=True))
        assert [first[name] for name in WORKLOAD_FIELDS] == ["8", "2", "99", "21", "64", "5", "40.75", "1"]
        assert first["start_offset_ms"] == "3.0" and first["itl_ms"] == "1.5 2.5"
        second = dict(zip(rows[0], rows[2], strict=True))
        assert [second[name] for name in WORKLOAD_FIELDS] == [""] * len(WORKLOAD_FIELDS)

    def test_xlsx_has_the_new_columns_and_the_whole_step_rows(self, viewer_client, team):
        run = store(team, phased_samples())
        response = viewer_client.get(reverse("hardware:run-export-xlsx", args=[run.pk]))
        data = response.getvalue() if hasattr(response, "getvalue") else b"".join(response.streaming_content)
        book = openpyxl.load_workbook(io.BytesIO(data))
        sheet = book["samples"]
        header = [cell.value for cell in next(sheet.iter_rows(max_row=1))]
        assert header == SAMPLE_COLUMNS
        phases = [row[header.index("phase")] for row in sheet.iter_rows(min_row=2, values_only=True)]
        assert phases == [WARMUP, RAMP, STEADY, STEADY, STEADY, DRAIN, STEADY]
        # "summary (2)": the front sheet is "Summary" already (llmbench.exports)
        summary = {row[0]: row for row in book["summary (2)"].iter_rows(min_row=2, values_only=True)}
        assert summary["ttft_ms"][1] == 3 and summary["whole_step.ttft_ms"][1] == 6
        assert "phases" not in summary and "whole_step" not in summary

    def test_json_summary_keeps_only_metric_rows(self, viewer_client, team):
        run = store(team, conversation_samples())
        response = viewer_client.get(reverse("hardware:run-export-json", args=[run.pk]))
        data = json.loads(b"".join(response.streaming_content) if response.streaming else response.content)
        metrics = [row["metric"] for row in data["tables"]["summary"]]
        assert "ttft_ms" in metrics and not {"by_turn", "sessions", "cached_tokens", "reasoning"} & set(metrics)


def test_the_workload_comes_with_the_run_in_one_query(team, viewer_client):
    """The run page reads the workload and its version through the run's join, not a query each."""
    run = workload_run(team)
    plain = stored_run(team, samples=generated_samples(5))
    viewer_client.get(reverse("hardware:run", args=[run.pk]))  # the session's first use
    with CaptureQueriesContext(connection) as with_workload:
        viewer_client.get(reverse("hardware:run", args=[run.pk]))
    with CaptureQueriesContext(connection) as without:
        viewer_client.get(reverse("hardware:run", args=[plain.pk]))
    assert len(with_workload) == len(without)
