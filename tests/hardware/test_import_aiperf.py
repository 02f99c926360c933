"""AIPerf / GenAI-Perf results: per-request records become samples in milliseconds whatever unit the
file writes, failures keep their error and no latency, the summary becomes the tool's reported
figures with its workload, and bad input names its line and field and stores nothing."""

import json
from datetime import UTC, datetime

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from apps.hardware.importers import PerformanceFileError, detect_format, parse_performance_file
from apps.hardware.models import PerformanceRun, RequestSample
from apps.hardware.selectors import performance_grid
from apps.providers.samples import PHASE_STEADY, PHASE_WARMUP
from tests.factories import HardwareProfileFactory

START_NS = 1_759_813_207_532_900_363
UNIT_SCALE = {"ns": 1e6, "us": 1e3, "ms": 1.0, "sec": 1e-3}  # milliseconds → the file's unit


def record(
    i: int = 0,
    *,
    unit: str = "ms",
    ttft_ms: float = 255.0,
    latency_ms: float = 300.0,
    gaps_ms: tuple[float, ...] = (5.0, 5.5, 4.5),
    phase: str = "profiling",
    **metric_overrides,
) -> dict:
    """One successful request of profile_export.jsonl, its times written in `unit`."""
    scale = UNIT_SCALE[unit]
    metrics = {
        "input_sequence_length": {"value": 550, "unit": "tokens"},
        "time_to_first_token": {"value": ttft_ms * scale, "unit": unit},
        "request_latency": {"value": latency_ms * scale, "unit": unit},
        "inter_chunk_latency": {"value": [g * scale for g in gaps_ms], "unit": unit},
        "output_sequence_length": {"value": len(gaps_ms) + 1, "unit": "tokens"},
        "output_token_count": {"value": len(gaps_ms) + 1, "unit": "tokens"},
        "inter_token_latency": {"value": 15.0 * scale, "unit": unit},
        "output_token_throughput_per_user": {"value": 192.1, "unit": "tokens/sec/user"},
    }  # fmt: skip
    metrics.update(metric_overrides)
    return {
        "metadata": {
            "session_num": i, "x_request_id": f"req-{i}", "conversation_id": f"conv-{i}", "turn_index": 0,
            "request_start_ns": START_NS + i * 250_000_000, "request_ack_ns": START_NS + i * 250_000_000 + 1_000,
            "request_end_ns": START_NS + i * 250_000_000 + int(latency_ms * 1e6), "worker_id": "worker_1",
            "record_processor_id": "record_processor_1", "benchmark_phase": phase, "was_cancelled": False,
            "cancellation_time_ns": None,
        },
        "metrics": {k: v for k, v in metrics.items() if v is not None},
        "error": None,
    }  # fmt: skip


def failed_record(i: int, *, code: int = 500, kind: str = "InternalServerError", message: str = "boom") -> dict:
    return {
        "metadata": {"session_num": i, "turn_index": 0, "request_start_ns": START_NS + i * 250_000_000,
                     "request_ack_ns": None, "benchmark_phase": "profiling", "was_cancelled": False},
        "metrics": {"error_isl": {"value": 550, "unit": "tokens"}},
        "error": {"code": code, "type": kind, "message": message},
    }  # fmt: skip


def jsonl(*docs: dict) -> str:
    return "".join(json.dumps(doc) + "\n" for doc in docs)


def stat(unit: str, avg: float, **stats) -> dict:
    return {"unit": unit, "avg": avg, **stats}


def aiperf_summary(**overrides) -> dict:
    """profile_export_aiperf.json as AIPerf 0.3 writes it: metrics at the top, then the input config."""
    summary = {
        "aiperf_version": "0.3.0",
        "request_throughput": stat("requests/sec", 13.16),
        "request_latency": stat("ms", 6550.35, p1=5523.6, p5=5641.2, p10=5649.2, p25=5678.5, p50=5799.9, p75=7314.9,
                                p90=8594.2, p95=8980.8, p99=9381.6, min=4996.2, max=9383.4, std=1171.1, count=200),
        "time_to_first_token": stat("ms", 1588.8, p50=787.5, p90=3695.1, p95=4051.4, p99=4119.3, min=382.2,
                                    max=4121.1, std=1190.0),
        "inter_token_latency": stat("ms", 51.76, p50=51.98, p99=55.87, min=46.81, max=56.30, std=1.23),
        "inter_chunk_latency": stat("ms", 51.5, p50=51.0),
        "output_token_throughput": stat("tokens/sec", 1274.6),
        "output_token_throughput_per_user": stat("tokens/sec/user", 19.4, p50=19.2),
        "output_sequence_length": stat("tokens", 96.85, p50=97.0, min=91.0, max=97.0),
        "input_sequence_length": stat("tokens", 550.0, p50=550.0),
        "benchmark_duration": stat("sec", 15.2),
        "request_count": stat("requests", 200.0),
        "total_osl": stat("tokens", 19370.0),
        "was_cancelled": False,
        "start_time": "2025-10-17T20:22:08.939332",
        "end_time": "2025-10-17T20:22:24.967633",
        "error_summary": [
            {"error_details": {"code": 499, "type": "RequestCancellationError", "message": "cancelled"}, "count": 2},
            {"error_details": {"code": 500, "type": "InternalServerError", "message": "boom"}, "count": 3},
        ],
        "input_config": {
            "endpoint": {"model_names": ["openai/gpt-oss-20b"], "type": "chat", "streaming": True},
            "input": {"prompt": {"input_tokens": {"mean": 550}, "output_tokens": {"mean": 100}}},
            "loadgen": {"concurrency": 100, "request_count": 200},
        },
    }  # fmt: skip
    summary.update(overrides)
    return summary


def genai_perf_summary() -> dict:
    """profile_export_genai_perf.json of an early GenAI-Perf: numbers as strings, times in nanoseconds."""
    return {
        "request_throughput": {"unit": "request per sec", "avg": "12.222026283281268"},
        "request_latency": {"unit": "ns", "avg": "81694262.3143508", "p99": "101977365.62", "p95": "98139925.99",
                            "p90": "93780014.0", "p50": "81988918.0", "max": "180952000", "min": "37899188",
                            "std": "11531917.69933574"},
        "time_to_first_token": {"unit": "ns", "avg": "20757771.22095672", "p50": "20901523.0"},
        "inter_token_latency": {"unit": "ns", "avg": "3860101.1100274306", "p50": "3988754.5"},
        "output_token_throughput": {"unit": "tokens per sec", "avg": "217.1010500160076"},
        "output_token_throughput_per_request": {"unit": "tokens per sec", "avg": "221.26925312949"},
        "num_output_token": {"unit": "tokens", "avg": "17.763097949886106", "max": "25", "min": "3"},
        "num_input_token": {"unit": "tokens", "avg": "550.0523917995445"},
        "input_config": {"model": ["gpt2_vllm"], "backend": "vllm", "service_kind": "triton", "concurrency": 1,
                         "request_rate": None, "synthetic_input_tokens_mean": 550, "output_tokens_mean": -1},
    }  # fmt: skip


def errors_of(*args, **kwargs) -> list[tuple]:
    with pytest.raises(PerformanceFileError) as caught:
        parse_performance_file(*args, **kwargs)
    return [(e.row, e.field) for e in caught.value.errors]


def parsed(text: str, **kwargs):
    fmt, runs = parse_performance_file(text.encode(), **kwargs)
    assert fmt == "aiperf"
    (run,) = runs
    return run


class TestDetection:
    """Both files of AIPerf and the summary of GenAI-Perf are recognised from their content."""

    @pytest.mark.parametrize(
        "text",
        [
            jsonl(record(0), record(1)),
            jsonl(failed_record(0), record(1)),
            json.dumps(aiperf_summary(), indent=2),
            json.dumps(genai_perf_summary()),
            json.dumps({"records": {"request_latency": {"tag": "request_latency", "unit": "ms", "avg": 1.0}}}),
        ],
        ids=["records", "records starting with a failure", "aiperf summary", "genai-perf summary", "older aiperf"],
    )
    def test_it_recognises_each_file(self, text):
        assert detect_format(text) == "aiperf"

    def test_the_file_name_decides_an_empty_record_list(self):
        assert detect_format("[]", "artifacts/run/profile_export.jsonl") == "aiperf"


class TestRecords:
    """profile_export.jsonl: one sample per record, in milliseconds."""

    def test_it_reads_a_request_in_milliseconds(self):
        run = parsed(jsonl(record(0), record(1, ttft_ms=300.0, latency_ms=420.0)))
        first, second = run.samples
        assert (first.ttft_ms, first.e2e_ms, first.itl_ms) == (255.0, 300.0, [5.0, 5.5, 4.5])
        assert (first.input_tokens, first.output_tokens, first.mean_itl_ms) == (550, 4, None)
        assert (second.ttft_ms, second.e2e_ms, second.index) == (300.0, 420.0, 1)
        assert [s.start_offset_ms for s in run.samples] == [0.0, 250.0]
        assert run.source_format == "aiperf" and run.model_name == "" and run.reported is None

    @pytest.mark.parametrize("unit", ["ns", "us", "sec"])
    def test_every_unit_of_time_becomes_milliseconds(self, unit):
        """A file in nanoseconds (GenAI-Perf's profile export), microseconds or seconds gives the same figures."""
        sample = parsed(jsonl(record(0, unit=unit))).samples[0]
        assert sample.ttft_ms == pytest.approx(255.0) and sample.e2e_ms == pytest.approx(300.0)
        assert sample.itl_ms == pytest.approx([5.0, 5.5, 4.5])

    def test_without_chunk_gaps_the_inter_token_latency_is_the_request_mean(self):
        sample = parsed(jsonl(record(0, inter_chunk_latency=None))).samples[0]
        assert sample.itl_ms is None and sample.mean_itl_ms == 15.0

    def test_the_older_ttft_tag_and_output_token_count_are_read(self):
        older = record(0, time_to_first_token=None, output_sequence_length=None,
                       ttft={"value": 111.0, "unit": "ms"}, output_token_count={"value": 9, "unit": "tokens"})  # fmt: skip
        sample = parsed(jsonl(older)).samples[0]
        assert (sample.ttft_ms, sample.output_tokens) == (111.0, 9)

    def test_a_failed_request_keeps_its_error_and_no_latency(self):
        run = parsed(jsonl(record(0), failed_record(1), failed_record(2, code=499, kind="RequestCancellationError",
                                                                       message="Request was cancelled")))  # fmt: skip
        ok, failed, cancelled = run.samples
        assert ok.error_code == "" and failed.error_code == "500" and cancelled.error_code == "499"
        assert failed.error_message == "InternalServerError: boom"
        assert (failed.ttft_ms, failed.e2e_ms, failed.itl_ms, failed.mean_itl_ms) == (None, None, None, None)
        assert failed.input_tokens == 550 and cancelled.start_offset_ms == 500.0

    def test_warm_up_requests_are_kept_but_marked(self):
        run = parsed(jsonl(record(0, phase="warmup"), record(1), record(2)))
        assert [s.phase for s in run.samples] == [PHASE_WARMUP, PHASE_STEADY, PHASE_STEADY]

    def test_without_warm_up_no_phase_is_set(self):
        assert {s.phase for s in parsed(jsonl(record(0), record(1))).samples} == {None}


class TestSummary:
    """profile_export_aiperf.json / profile_export_genai_perf.json: the tool's figures and workload."""

    def test_it_reads_the_aiperf_summary_and_its_input_config(self):
        run = parsed(json.dumps(aiperf_summary(), indent=2))
        reported = run.reported
        assert reported.metrics["e2e_ms"] == {
            "mean": 6550.35, "stdev": 1171.1, "min": 4996.2, "max": 9383.4, "p1": 5523.6, "p5": 5641.2, "p10": 5649.2,
            "p25": 5678.5, "p50": 5799.9, "p75": 7314.9, "p90": 8594.2, "p95": 8980.8, "p99": 9381.6, "count": 200.0,
        }  # fmt: skip
        assert reported.metrics["ttft_ms"]["p95"] == 4051.4 and reported.metrics["tpot_ms"]["mean"] == 51.76
        assert reported.metrics["itl_ms"]["p50"] == 51.0 and reported.metrics["output_tps"]["mean"] == 19.4
        assert (reported.request_count, reported.error_count) == (205, 5)  # 200 completed + 2 cancelled + 3 failed
        assert (reported.request_throughput_rps, reported.output_token_throughput_tps) == (13.16, 1274.6)
        assert (reported.input_tokens_mean, reported.output_tokens_mean) == (550.0, 96.85)
        assert (run.model_name, run.concurrency, run.request_rate_rps) == ("openai/gpt-oss-20b", 100, None)
        assert (run.input_tokens_target, run.output_tokens_target, run.duration_s) == (550, 100, 15.2)
        assert run.started_at == datetime(2025, 10, 17, 20, 22, 8, 939332, tzinfo=UTC)
        assert (run.tool, run.tool_version, run.samples) == ("aiperf", "0.3.0", [])

    def test_a_request_rate_and_the_error_count_are_read(self):
        summary = aiperf_summary(error_request_count=stat("requests", 7.0))
        summary["input_config"]["loadgen"] = {"request_rate": 2.5}
        run = parsed(json.dumps(summary))
        assert (run.request_rate_rps, run.concurrency, run.reported.error_count) == (2.5, None, 7)

    def test_a_stopped_benchmark_says_so(self):
        assert "stopped" in parsed(json.dumps(aiperf_summary(was_cancelled=True))).notes

    def test_the_older_aiperf_summary_keeps_metrics_under_records(self):
        metrics = {k: v for k, v in aiperf_summary().items() if isinstance(v, dict) and "unit" in v}
        older = {"records": {k: {"tag": k, "header": k, **v} for k, v in metrics.items()},
                 "input_config": aiperf_summary()["input_config"]}  # fmt: skip
        run = parsed(json.dumps(older))
        assert run.reported.metrics["e2e_ms"]["p99"] == 9381.6 and run.concurrency == 100 and run.tool == "aiperf"

    def test_an_early_genai_perf_summary_is_read_in_milliseconds(self):
        run = parsed(json.dumps(genai_perf_summary()))
        e2e = run.reported.metrics["e2e_ms"]
        assert e2e["mean"] == pytest.approx(81.6942623143508) and e2e["max"] == pytest.approx(180.952)
        assert run.reported.metrics["tpot_ms"]["mean"] == pytest.approx(3.8601011100274306)
        assert run.reported.metrics["output_tps"]["mean"] == pytest.approx(221.26925312949)
        assert run.reported.output_tokens_mean == pytest.approx(17.763097949886106)
        assert run.reported.request_throughput_rps == pytest.approx(12.222026283281268)
        assert (run.model_name, run.concurrency, run.tool) == ("gpt2_vllm", 1, "genai-perf")
        assert (run.input_tokens_target, run.output_tokens_target) == (550, None)  # -1 is "not set"

    def test_a_genai_perf_config_file_summary_is_read(self):
        summary = {
            "request_latency": stat("ms", 900.0, p99=1200.0),
            "input_config": {"model_names": ["small_model"], "input": {"synthetic_tokens": {"mean": 550}},
                             "perf_analyzer": {"stimulus": {"concurrency": 8}}},
        }  # fmt: skip
        run = parsed(json.dumps(summary))
        assert (run.model_name, run.concurrency, run.input_tokens_target, run.tool) == (
            "small_model",
            8,
            550,
            "genai-perf",
        )

    @pytest.mark.parametrize("order", ["records first", "summary first"])
    def test_records_with_their_summary_give_samples_and_workload(self, order):
        records, summary = jsonl(record(0), failed_record(1)), json.dumps(aiperf_summary(), indent=2)
        first, companion = (records, summary) if order == "records first" else (summary, records)
        run = parsed(first, companion=companion.encode())
        assert len(run.samples) == 2 and run.samples[1].error_code == "500"
        assert (run.model_name, run.concurrency, run.reported.request_count) == ("openai/gpt-oss-20b", 100, 205)


class TestBadInput:
    """Every problem names its line (or `summary`) and field; nothing is parsed half-way."""

    def test_a_successful_record_without_latency_is_named(self):
        text = jsonl(record(0), record(1, request_latency=None))
        assert errors_of(text.encode()) == [("line 2", "metrics.request_latency")]

    def test_a_value_that_is_not_a_number_is_named(self):
        text = jsonl(record(0, time_to_first_token={"value": "fast", "unit": "ms"}))
        assert errors_of(text.encode()) == [("line 1", "metrics.time_to_first_token.value")]

    def test_a_gap_that_is_not_a_number_is_named_by_its_position(self):
        text = jsonl(record(0, inter_chunk_latency={"value": [5.0, "x"], "unit": "ms"}))
        assert errors_of(text.encode()) == [("line 1", "metrics.inter_chunk_latency.value[1]")]

    def test_an_unknown_unit_is_named(self):
        text = jsonl(record(0, request_latency={"value": 3.0, "unit": "fortnights"}))
        assert errors_of(text.encode()) == [("line 1", "metrics.request_latency.unit")]

    def test_a_line_that_is_not_a_record_is_named(self):
        text = jsonl(record(0)) + '{"hello": "world"}\n'
        assert errors_of(text.encode(), file_format="aiperf") == [("line 2", "record")]

    def test_a_line_that_is_not_json_is_named(self):
        text = jsonl(record(0)) + "{not json\n"
        assert errors_of(text.encode()) == [("line 2", "file")]

    def test_an_empty_file_is_rejected(self):
        assert errors_of(b"", file_format="aiperf") == [("file", "file")]

    def test_a_json_that_is_neither_file_is_rejected(self):
        assert errors_of(b'{"hello": "world"}', file_format="aiperf") == [("file", "file")]

    def test_a_bad_summary_value_is_named(self):
        summary = aiperf_summary(request_latency=stat("ms", "slow"))
        summary["input_config"]["loadgen"]["concurrency"] = 0
        errors = errors_of(json.dumps(summary).encode())
        assert errors == [("summary", "request_latency.avg"), ("summary", "input_config.loadgen.concurrency")]

    def test_two_record_files_are_not_a_pair(self):
        text = jsonl(record(0))
        assert errors_of(text.encode(), companion=text.encode()) == [("file", "companion")]


@pytest.mark.django_db
class TestUpload:
    """Through the API: the records and their summary make one run, shown in the grid; a bad file stores nothing."""

    URL = "/api/v1/performance/upload"

    def upload(self, api, team, *, records: str, summary: str | None = None, **fields):
        body = {"file": SimpleUploadedFile("profile_export.jsonl", records.encode()), "quantization": "MXFP4",
                "hardware": HardwareProfileFactory(team=team, name="8x H100").pk, **fields}  # fmt: skip
        if summary is not None:
            body["summary_file"] = SimpleUploadedFile("profile_export_aiperf.json", summary.encode())
        return api.post(self.URL, body, format="multipart")

    def test_records_and_summary_are_stored_and_show_in_the_grid(self, member_api, team):
        records = jsonl(record(0, ttft_ms=100.0), record(1, ttft_ms=300.0), failed_record(2))
        response = self.upload(member_api, team, records=records, summary=json.dumps(aiperf_summary()))
        assert response.status_code == 201, response.json()
        body = response.json()
        assert body["format"] == "aiperf" and body["samples"] == 3
        run = PerformanceRun.objects.get()
        assert (run.tool, run.concurrency, str(run.variant)) == ("aiperf", 100, "openai/gpt-oss-20b · MXFP4")
        assert RequestSample.objects.filter(run=run).count() == 3
        summary = run.summary
        assert (summary.source, summary.request_count, summary.error_count) == ("samples", 3, 1)
        assert summary.metrics["ttft_ms"]["p50"] == pytest.approx(200.0)  # failed request left out
        grid = performance_grid(team=team, metric="ttft_p50_ms")
        assert [(c.value, c.run_ids) for c in grid.cells.values()] == [(pytest.approx(200.0), [run.pk])]
        assert grid.workload.key == "c100-in550-out100"

    def test_records_alone_ask_for_the_model_and_concurrency(self, member_api, team):
        response = self.upload(member_api, team, records=jsonl(record(0)))
        assert response.status_code == 400
        assert {e["field"] for e in response.json()["errors"]} == {"model", "concurrency"}
        assert not PerformanceRun.objects.exists()

    def test_a_bad_record_is_400_naming_it_and_stores_nothing(self, member_api, team):
        records = jsonl(record(0), record(1, request_latency=None))
        response = self.upload(member_api, team, records=records, summary=json.dumps(aiperf_summary()))
        assert response.status_code == 400
        assert response.json()["errors"] == [
            {"row": "line 2", "field": "metrics.request_latency",
             "message": "is missing: every successful request has its latency."}
        ]  # fmt: skip
        assert not PerformanceRun.objects.exists() and not RequestSample.objects.exists()

    def test_a_viewer_cannot_upload(self, viewer_api, team):
        response = self.upload(viewer_api, team, records=jsonl(record(0)), model_name="m", concurrency=1)
        assert response.status_code == 403 and not PerformanceRun.objects.exists()
