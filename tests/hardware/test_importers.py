"""The performance file importers: every format in its tool's units, failures kept, bad input named."""

import json
from datetime import UTC, datetime

import pytest

from apps.hardware.importers import (
    PerformanceFileError,
    detect_format,
    parse_guidellm,
    parse_llmbench_json,
    parse_llmperf,
    parse_performance_file,
    parse_seed_csv,
    parse_vllm,
)
from tests.hardware.files import (
    GuidellmRequest,
    VllmRequest,
    guidellm_report,
    guidellm_v03_benchmark,
    guidellm_v04_benchmark,
    json_lines,
    llmbench_file,
    llmbench_run,
    llmbench_sample,
    llmperf_failure,
    llmperf_response,
    llmperf_summary,
    seed_csv,
    seed_row,
    vllm_failure,
    vllm_result,
)


def errors_of(parse, *args, **kwargs) -> list[tuple]:
    """The (row, field) of every problem the parser reports."""
    with pytest.raises(PerformanceFileError) as caught:
        parse(*args, **kwargs)
    return [(e.row, e.field) for e in caught.value.errors]


def mixed_guidellm_requests() -> list[GuidellmRequest]:
    return [
        GuidellmRequest(offset_s=0.1, ttft_ms=100.0, latency_s=3.6),
        GuidellmRequest(offset_s=0.6, ttft_ms=140.0, latency_s=4.0),
        GuidellmRequest(offset_s=1.1, ttft_ms=120.0, latency_s=3.8),
        GuidellmRequest(offset_s=1.5, status="errored", error="HTTP 500: Internal Server Error"),
        GuidellmRequest(offset_s=2.0, status="incomplete", error="cancelled at the end of the benchmark"),
    ]


class TestDetection:
    """Each tool's file is recognised from its content; the file name only breaks a tie."""

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            (seed_csv(), "seed_csv"),
            (json.dumps(llmbench_file()), "llmbench_json"),
            (json.dumps([llmbench_run()]), "llmbench_json"),
            (json.dumps([llmperf_response()]), "llmperf"),
            (json.dumps(llmperf_summary([llmperf_response()])), "llmperf"),
            (json.dumps(vllm_result([VllmRequest()], detailed=False)), "vllm"),
            (json_lines(vllm_result([VllmRequest()]), vllm_result([VllmRequest()])), "vllm"),
            (json.dumps(guidellm_report(guidellm_v03_benchmark([GuidellmRequest()]))), "guidellm"),
            (json.dumps(guidellm_report(guidellm_v04_benchmark([GuidellmRequest()]), version="0.4.0")), "guidellm"),
        ],
    )
    def test_it_recognises_each_format(self, text, expected):
        assert detect_format(text) == expected

    def test_an_unknown_file_is_rejected_naming_the_format(self):
        assert errors_of(detect_format, '{"hello": "world"}', "results.json") == [("file", "format")]

    def test_the_file_name_decides_only_when_the_content_cannot(self):
        assert detect_format("[]", "model_550_150_individual_responses.json") == "llmperf"
        assert detect_format("model,score\nm,1\n", "points.csv") == "seed_csv"
        assert detect_format(json.dumps([llmperf_response()]), "whatever.csv") == "llmperf"

    def test_broken_json_is_named_by_its_line(self):
        assert errors_of(detect_format, '{\n  "benchmarks": [\n  oops\n}') == [("line 3", "file")]


class TestEntryPoint:
    """parse_performance_file decodes, detects or takes the given format, and parses."""

    def test_it_returns_the_detected_format_and_runs(self):
        fmt, runs = parse_performance_file(json.dumps([llmperf_response()]).encode())
        assert fmt == "llmperf" and len(runs) == 1 and runs[0].samples[0].ttft_ms == pytest.approx(2165.774205001071)

    def test_a_byte_order_mark_is_accepted(self):
        fmt, runs = parse_performance_file(b"\xef\xbb\xbf" + seed_csv().encode())
        assert fmt == "seed_csv" and runs[0].model_name == "graphon/graphon-Qwen3-Omni-30B-A3B-Instruct"

    def test_non_utf8_content_is_rejected(self):
        assert errors_of(parse_performance_file, "provider_model\nMüller\n".encode("latin-1")) == [("file", "encoding")]

    def test_an_unknown_file_format_is_an_error(self):
        assert errors_of(parse_performance_file, seed_csv().encode(), file_format="excel") == [("file", "format")]

    def test_a_given_format_is_parsed_as_that_format(self):
        errors = errors_of(parse_performance_file, seed_csv().encode(), file_format="vllm")
        assert errors == [("line 1", "file")]  # a CSV is not JSON

    def test_an_empty_file_is_rejected(self):
        assert errors_of(parse_performance_file, b"  \n") == [("file", "file")]

    def test_a_companion_is_only_for_llmperf(self):
        assert errors_of(parse_performance_file, seed_csv().encode(), companion=b"{}") == [("file", "companion")]


class TestSeedCsv:
    """The seed tool's CSV: one load point (aggregates only) per row."""

    def test_a_qps_row_is_a_run_at_that_request_rate_with_its_aggregates(self):
        (run,) = parse_seed_csv(seed_csv())
        assert (run.source_format, run.tool, run.row) == ("seed_csv", "seed_csv", 2)
        assert (run.provider, run.model_name) == ("together", "graphon/graphon-Qwen3-Omni-30B-A3B-Instruct")
        assert (run.request_rate_rps, run.concurrency, run.duration_s, run.samples) == (0.1, None, 19.37, [])
        reported = run.reported
        assert reported.metrics["ttft_ms"] == {
            "mean": 781.52, "stdev": 231.19, "p05": 502.64, "p50": 932.56, "p80": 947.31, "p95": 954.68,
            "p99": 956.65, "p999": 957.09,
        }  # fmt: skip
        assert reported.metrics["e2e_ms"]["p50"] == 3705.06
        assert reported.metrics["output_tps"]["mean"] == 189.27
        assert reported.metrics["input_tokens"] == {"mean": 485.0, "stdev": 52.94, "min": 427.0, "max": 555.0}
        assert reported.metrics["output_tokens"]["max"] == 634.0
        assert (reported.input_tokens_mean, reported.output_tokens_mean) == (485.0, 582.67)
        assert (reported.request_count, reported.error_count) == (3, 0)
        assert (reported.request_throughput_rps, reported.output_token_throughput_tps) == (0.1549, 90.24)
        assert reported.extra == {
            "input_total_tokens": 1455.0, "output_total_tokens": 1748.0, "per_gpu_num_gpus": 1.0,
            "per_gpu_tps_mean": 0.0, "per_gpu_tps_stdev": 0.0,
        }  # fmt: skip

    def test_a_concurrency_row_sets_the_concurrency(self):
        (run,) = parse_seed_csv(seed_csv(seed_row(traffic_mode="concurrency", traffic_level="8")))
        assert (run.concurrency, run.request_rate_rps) == (8, None)

    def test_each_row_is_a_run_named_by_its_line(self):
        text = seed_csv(seed_row(), seed_row(traffic_level="0.5", hf_dataset_name="sharegpt"))
        runs = parse_seed_csv(text)
        assert [(r.row, r.request_rate_rps, r.dataset) for r in runs] == [(2, 0.1, ""), (3, 0.5, "sharegpt")]

    def test_empty_cells_are_missing_and_only_provider_model_is_required(self):
        (run,) = parse_seed_csv("provider_model,ttft_mean,ttft_p99,e2e_distribution\norg/m,250,,\n")
        assert run.model_name == "org/m" and run.reported.metrics == {"ttft_ms": {"mean": 250.0}}
        assert run.reported.request_count is None and run.concurrency is None

    def test_an_unknown_column_rejects_the_file(self):
        assert errors_of(parse_seed_csv, seed_csv(header=["provider_model", "colour"])) == [(1, "colour")]

    def test_a_missing_provider_model_column_is_named(self):
        assert errors_of(parse_seed_csv, "provider_name,ttft_mean\ntogether,250\n") == [(1, "provider_model")]

    def test_it_names_every_bad_row_and_field(self):
        text = seed_csv(
            seed_row(ttft_mean="fast"),  # 2
            seed_row(e2e_p99="NaN"),  # 3
            seed_row(user_tps_mean="inf"),  # 4
            seed_row(provider_model=""),  # 5
            seed_row(traffic_mode="rps"),  # 6
            seed_row(traffic_mode="concurrency", traffic_level="2.5"),  # 7
            seed_row(summary_total_num_requests="-3"),  # 8
        )
        assert errors_of(parse_seed_csv, text + "together,only,three\n") == [
            (2, "ttft_mean"), (3, "e2e_p99"), (4, "user_tps_mean"), (5, "provider_model"), (6, "traffic_mode"),
            (7, "traffic_level"), (8, "summary_total_num_requests"), (9, "row"),
        ]  # fmt: skip


class TestLlmbenchJson:
    """Our own format: strict, exact, and documented in docs/performance-formats.md."""

    def test_it_reads_a_run_with_samples_hardware_and_deployment(self):
        (run,) = parse_llmbench_json(json.dumps(llmbench_file()))
        assert (run.source_format, run.row, run.tool, run.tool_version) == (
            "llmbench_json", "run 1", "llmbench-loadgen", "0.1.0",
        )  # fmt: skip
        assert (run.model_name, run.quantization, run.concurrency, run.request_rate_rps) == (
            "meta-llama/Llama-3.1-8B-Instruct", "AWQ", 16, None,
        )  # fmt: skip
        assert run.started_at == datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
        assert (run.duration_s, run.tags, run.dataset) == (60.5, ["nightly", "h100"], "sharegpt")
        assert run.hardware["accelerator_count"] == 1 and run.hardware["hourly_cost_usd"] == 2.49
        assert run.deployment["settings"] == {"enable_prefix_caching": True}
        first = run.samples[0]
        assert (first.index, first.ttft_ms, first.e2e_ms, first.itl_ms, first.start_offset_ms) == (
            0, 120.0, 2600.0, [19.5, 19.6, 19.4], 0.0,
        )  # fmt: skip
        assert run.reported is None

    def test_a_bare_list_of_runs_is_accepted_and_tool_defaults_to_llmbench(self):
        runs = parse_llmbench_json(json.dumps([llmbench_run(tool=None), llmbench_run(hardware=None)]))
        assert [r.row for r in runs] == ["run 1", "run 2"]
        assert runs[0].tool == "llmbench" and runs[1].hardware is None

    def test_failed_samples_keep_their_code_and_lose_latencies(self):
        failed = llmbench_sample(1, error_code="http_503", error_message="Service Unavailable")
        (run,) = parse_llmbench_json(json.dumps([llmbench_run(samples=[llmbench_sample(0), failed])]))
        sample = run.samples[1]
        assert (sample.error_code, sample.error_message) == ("http_503", "Service Unavailable")
        assert (sample.ttft_ms, sample.e2e_ms, sample.itl_ms, sample.input_tokens) == (None, None, None, 512)

    def test_indexes_default_to_the_position_and_must_be_unique(self):
        samples = [{"ttft_ms": 100.0, "e2e_ms": 900.0}, {"ttft_ms": 110.0, "e2e_ms": 950.0}]
        (run,) = parse_llmbench_json(json.dumps([llmbench_run(samples=samples)]))
        assert [s.index for s in run.samples] == [0, 1]
        twins = [llmbench_sample(3), llmbench_sample(3)]
        assert errors_of(parse_llmbench_json, json.dumps([llmbench_run(samples=twins)])) == [
            ("run 1 sample 2", "index")
        ]

    def test_a_time_without_offset_is_utc(self):
        (run,) = parse_llmbench_json(json.dumps([llmbench_run(started_at="2026-03-01T10:00:00")]))
        assert run.started_at == datetime(2026, 3, 1, 10, 0, tzinfo=UTC)

    def test_unknown_keys_are_named(self):
        run = llmbench_run(colour="red", samples=[llmbench_sample(0, ttft_s=0.1)])
        run["hardware"]["gpus"] = 8
        doc = {**llmbench_file(run), "generator": "me"}
        assert errors_of(parse_llmbench_json, json.dumps(doc)) == [
            ("file", "generator"), ("run 1 sample 1", "ttft_s"), ("run 1", "colour"), ("run 1", "hardware.gpus"),
        ]  # fmt: skip

    def test_types_are_checked_strictly(self):
        samples = [
            llmbench_sample(0, ttft_ms="120"),
            llmbench_sample(1, e2e_ms=-5.0),
            llmbench_sample(2, output_tokens=12.5),
            llmbench_sample(3, itl_ms=[19.5, float("nan")]),
            llmbench_sample(4, error_message="timeout"),
        ]
        run = llmbench_run(concurrency="16", started_at="yesterday", tags="nightly", samples=samples)
        run["deployment"] = {"name": "x", "engine": "magic", "tensor_parallel": 0}
        run["hardware"] = {"accelerator": "H100"}
        assert errors_of(parse_llmbench_json, json.dumps([run])) == [
            ("run 1 sample 1", "ttft_ms"), ("run 1 sample 2", "e2e_ms"), ("run 1 sample 3", "output_tokens"),
            ("run 1 sample 4", "itl_ms[1]"), ("run 1 sample 5", "error_message"), ("run 1", "concurrency"),
            ("run 1", "started_at"), ("run 1", "tags"), ("run 1", "hardware.name"),
            ("run 1", "deployment.tensor_parallel"), ("run 1", "deployment.engine"),
        ]  # fmt: skip

    def test_the_format_version_and_samples_are_required(self):
        doc = {"format": "llmbench.performance/2", "runs": [llmbench_run(samples=[])]}
        assert errors_of(parse_llmbench_json, json.dumps(doc)) == [("file", "format"), ("run 1", "samples")]


class TestLlmperf:
    """LLMPerf: per-request seconds, a mean ITL, failures by code or message, a flat summary."""

    def test_it_converts_seconds_to_milliseconds(self):
        (run,) = parse_llmperf(json.dumps([llmperf_response(ttft_s=0.25, e2e_s=4.0, output_tokens=100)]))
        sample = run.samples[0]
        assert (run.source_format, run.tool) == ("llmperf", "llmperf")
        assert (sample.index, sample.error_code, sample.ttft_ms, sample.e2e_ms) == (0, "", 250.0, 4000.0)
        assert (sample.input_tokens, sample.output_tokens) == (550, 100)

    def test_the_inter_token_latency_is_a_per_request_mean(self):
        (run,) = parse_llmperf(json.dumps([llmperf_response(e2e_s=4.0, output_tokens=100)]))
        assert run.samples[0].mean_itl_ms == pytest.approx(40.0) and run.samples[0].itl_ms is None

    def test_a_list_of_inter_token_latencies_is_the_gaps(self):
        (run,) = parse_llmperf(json.dumps([llmperf_response(inter_token_latency_s=[0.25, 0.02, 0.03])]))
        assert run.samples[0].itl_ms == pytest.approx([250.0, 20.0, 30.0]) and run.samples[0].mean_itl_ms is None

    def test_failed_requests_keep_the_http_code_and_no_latencies(self):
        (run,) = parse_llmperf(json.dumps([llmperf_response(), llmperf_failure(429, "Too Many Requests")]))
        failed = run.samples[1]
        assert (failed.error_code, failed.error_message) == ("429", "Too Many Requests")
        assert (failed.ttft_ms, failed.e2e_ms, failed.mean_itl_ms, failed.output_tokens) == (None, None, None, 0)

    def test_a_failure_without_http_code_is_error(self):
        (run,) = parse_llmperf(json.dumps([llmperf_failure(-1, "ReadTimeout"), llmperf_failure(None, "boom")]))
        assert [(s.error_code, s.error_message) for s in run.samples] == [("error", "ReadTimeout"), ("error", "boom")]

    def test_minus_one_without_a_message_and_with_a_latency_is_a_success(self):
        (run,) = parse_llmperf(json.dumps([llmperf_response(error_code=-1, ttft_s=0.5)]))
        assert (run.samples[0].error_code, run.samples[0].ttft_ms) == ("", 500.0)

    def test_request_start_times_become_offsets_from_the_first(self):
        responses = [llmperf_response(request_start_time=1.5), llmperf_response(request_start_time=2.25)]
        (run,) = parse_llmperf(json.dumps(responses))
        assert [s.start_offset_ms for s in run.samples] == [0.0, 750.0]

    def test_a_summary_alone_gives_the_reported_summary(self):
        responses = [llmperf_response(ttft_s=t, input_tokens=550 + i) for i, t in enumerate((1.0, 2.0, 3.0))]
        summary = llmperf_summary([*responses, llmperf_failure()], concurrency=4, wall_s=30.0)
        (run,) = parse_llmperf(json.dumps(summary))
        assert (run.model_name, run.concurrency, run.input_tokens_target, run.output_tokens_target) == (
            "01-ai/Yi-1.5-34B-Chat", 4, 550, 150,
        )  # fmt: skip
        assert run.started_at == datetime(2024, 6, 12, 16, 15, 21, tzinfo=UTC) and run.samples == []
        reported = run.reported
        assert reported.metrics["ttft_ms"]["mean"] == pytest.approx(2000.0)
        assert reported.metrics["ttft_ms"]["p50"] == pytest.approx(2000.0)
        assert reported.metrics["ttft_ms"]["stdev"] == pytest.approx(1000.0)
        assert reported.metrics["input_tokens"]["min"] == 550.0  # written as the string "550"
        assert (reported.request_count, reported.error_count) == (4, 1)
        assert reported.request_throughput_rps == pytest.approx(0.1)  # 6 per minute
        assert reported.output_token_throughput_tps == pytest.approx(157 * 3 / 30.0)

    def test_a_companion_summary_gives_the_samples_their_model_and_workload(self):
        responses = json.dumps([llmperf_response(), llmperf_failure()]).encode()
        summary = json.dumps(llmperf_summary([llmperf_response(), llmperf_failure()], concurrency=8)).encode()
        for content, companion in ((responses, summary), (summary, responses)):
            fmt, (run,) = parse_performance_file(content, companion=companion)
            assert (fmt, run.model_name, run.concurrency) == ("llmperf", "01-ai/Yi-1.5-34B-Chat", 8)
            assert (len(run.samples), run.reported.error_count) == (2, 1)

    def test_two_summaries_are_refused(self):
        summary = json.dumps(llmperf_summary([llmperf_response()]))
        assert errors_of(parse_llmperf, summary, summary) == [("file", "companion")]

    def test_bad_values_are_named(self):
        missing = llmperf_response()
        del missing["end_to_end_latency_s"]
        responses = [llmperf_response(ttft_s="fast"), llmperf_response(ttft_s=float("nan")), missing]
        summary = llmperf_summary([llmperf_response()], results_ttft_s_mean="slow", num_concurrent_requests=0)
        assert errors_of(parse_llmperf, json.dumps(responses), json.dumps(summary)) == [
            ("request 1", "ttft_s"), ("request 2", "ttft_s"), ("request 3", "end_to_end_latency_s"),
            ("summary", "results_ttft_s_mean"), ("summary", "num_concurrent_requests"),
        ]  # fmt: skip


class TestVllm:
    """vLLM: arrays in seconds, aggregates in milliseconds, one run per JSON object."""

    def requests(self) -> list[VllmRequest]:
        return [VllmRequest(ttft=0.1, gaps=(0.03, 0.04), start=81234.12), vllm_failure(start=81235.02)]

    def test_it_converts_the_per_request_arrays_to_milliseconds(self):
        (run,) = parse_vllm(json.dumps(vllm_result(self.requests())))
        ok = run.samples[0]
        assert (run.source_format, run.tool, run.row) == ("vllm", "vllm", "run 1")
        assert (ok.index, ok.error_code, ok.ttft_ms) == (0, "", pytest.approx(100.0))
        assert ok.itl_ms == pytest.approx([30.0, 40.0]) and ok.e2e_ms == pytest.approx(170.0)
        assert (ok.input_tokens, ok.output_tokens) == (200, 3)

    def test_without_latencies_the_e2e_is_ttft_plus_the_gaps(self):
        (run,) = parse_vllm(json.dumps(vllm_result([VllmRequest(ttft=0.2, gaps=(0.05, 0.05))], latencies=False)))
        assert run.samples[0].e2e_ms == pytest.approx(300.0)

    def test_failed_requests_keep_the_error_text_and_no_latencies(self):
        (run,) = parse_vllm(json.dumps(vllm_result(self.requests())))
        failed = run.samples[1]
        assert (failed.error_code, failed.error_message) == ("error", "Too Many Requests")
        assert (failed.ttft_ms, failed.e2e_ms, failed.itl_ms, failed.output_tokens) == (None, None, None, 0)

    def test_long_error_texts_are_cut_to_2000_characters(self):
        (run,) = parse_vllm(json.dumps(vllm_result([VllmRequest(), vllm_failure(error="Traceback " * 500)])))
        assert len(run.samples[1].error_message) == 2000

    def test_start_times_become_offsets_from_the_first_request(self):
        (run,) = parse_vllm(json.dumps(vllm_result(self.requests())))
        assert [s.start_offset_ms for s in run.samples] == pytest.approx([0.0, 900.0])

    def test_it_reads_the_workload_and_the_date(self):
        doc = vllm_result(self.requests(), request_rate="inf", max_concurrency=16, label="c16")
        (run,) = parse_vllm(json.dumps(doc))
        assert (run.model_name, run.provider, run.name) == ("Qwen/Qwen2.5-VL-3B-Instruct", "openai", "c16")
        assert (run.request_rate_rps, run.concurrency) == (None, 16)
        assert run.started_at == datetime(2026, 7, 22, 6, 1, 14, tzinfo=UTC)
        assert run.duration_s == pytest.approx(0.9)

    def test_request_rate_inf_without_max_concurrency_is_a_burst_of_every_prompt(self):
        """vLLM's default (rate inf, no max concurrency): concurrency = num_prompts, tagged and noted "burst"."""
        requests = [VllmRequest(start=81234.0 + i / 100) for i in range(5)]
        doc = vllm_result(requests, request_rate="inf", max_concurrency=None)
        (run,) = parse_vllm(json.dumps(doc))
        assert (run.concurrency, run.request_rate_rps) == (5, None)
        assert "burst" in run.tags and "all 5 prompts were sent at once" in run.notes

    def test_a_burst_is_read_from_num_prompts_not_the_samples(self):
        """num_prompts counts every request sent, failed ones included, also without per-request arrays."""
        doc = vllm_result(self.requests(), detailed=False, request_rate=float("inf"), max_concurrency=None,
                          num_prompts=200)  # fmt: skip
        (run,) = parse_vllm(json.dumps(doc))  # json writes the float as Infinity
        assert run.concurrency == 200 and run.tags == ["burst"]

    def test_an_explicit_max_concurrency_is_not_a_burst(self):
        """With --max-concurrency the file's concurrency stands, untagged."""
        (run,) = parse_vllm(json.dumps(vllm_result(self.requests(), request_rate="inf", max_concurrency=4)))
        assert run.concurrency == 4 and "burst" not in run.tags

    def test_a_finite_request_rate_is_kept(self):
        (run,) = parse_vllm(json.dumps(vllm_result(self.requests(), request_rate=2.5)))
        assert run.request_rate_rps == 2.5

    def test_without_arrays_it_reads_the_reported_summary(self):
        requests = [VllmRequest(ttft=t, start=81234.0 + t) for t in (0.05, 0.1, 0.15)] + [vllm_failure()]
        doc = vllm_result(requests, detailed=False, **{"p99.9_ttft_ms": 149.9, "mean_e2el_ms": 170.0})
        (run,) = parse_vllm(json.dumps(doc))
        reported = run.reported
        assert run.samples == []
        assert reported.metrics["ttft_ms"] == pytest.approx(
            {"mean": 100.0, "p50": 100.0, "stdev": 40.824829, "p99": 149.0, "p99.9": 149.9}
        )
        assert reported.metrics["e2e_ms"] == {"mean": 170.0}
        assert reported.metrics["itl_ms"]["mean"] == pytest.approx(34.5)
        assert (reported.request_count, reported.error_count) == (4, 1)
        assert reported.request_throughput_rps == pytest.approx(doc["request_throughput"])
        assert reported.output_token_throughput_tps == pytest.approx(doc["output_throughput"])
        assert (reported.input_tokens_mean, reported.output_tokens_mean) == (200.0, 3.0)
        assert reported.extra["total_output_tokens"] == 9.0

    def test_latencies_alone_give_no_samples(self):
        (run,) = parse_vllm(json.dumps(vllm_result(self.requests(), detailed=False)))
        assert run.samples == [] and run.reported.request_count == 2

    def test_older_files_count_failures_from_the_prompts(self):
        doc = vllm_result(self.requests(), detailed=False, latencies=False)
        del doc["failed"]
        (run,) = parse_vllm(json.dumps(doc))
        assert (run.reported.request_count, run.reported.error_count) == (2, 1)

    def test_both_spellings_of_goodput_are_read(self):
        for key in ("request_goodput:", "request_goodput"):
            doc = {k: v for k, v in vllm_result(self.requests()).items() if k != "request_goodput"}
            (run,) = parse_vllm(json.dumps({**doc, key: 0.75}))
            assert run.reported.extra["request_goodput"] == 0.75

    def test_json_lines_give_one_run_per_line(self):
        text = json_lines(
            vllm_result(self.requests(), max_concurrency=1), vllm_result(self.requests(), max_concurrency=8)
        )
        runs = parse_vllm(text)
        assert [(r.row, r.concurrency, len(r.samples)) for r in runs] == [("run 1", 1, 2), ("run 2", 8, 2)]

    def test_arrays_of_unequal_length_are_named(self):
        doc = vllm_result(self.requests())
        doc["itls"].append([0.1])
        doc["errors"].pop()
        assert errors_of(parse_vllm, json.dumps(doc)) == [("run 1", "itls"), ("run 1", "errors")]

    def test_bad_values_are_named(self):
        doc = vllm_result(self.requests(), date="yesterday", request_rate="fast")
        doc["ttfts"][0] = "soon"
        doc["itls"][0][1] = float("nan")
        doc["latencies"][0] = -1.0
        del doc["completed"]
        assert errors_of(parse_vllm, json.dumps(doc)) == [
            ("run 1", "completed"), ("run 1", "date"), ("run 1", "request_rate"), ("run 1", "ttfts[0]"),
            ("run 1", "latencies[0]"), ("run 1", "itls[0][1]"),
        ]  # fmt: skip


class TestGuidellm:
    """guidellm: 0.2/0.3 and 0.4+ reports, one run per benchmark, sampled requests and reported metrics."""

    def test_it_reads_a_03_report(self):
        report = guidellm_report(guidellm_v03_benchmark(mixed_guidellm_requests()))
        (run,) = parse_guidellm(json.dumps(report))
        assert (run.source_format, run.tool, run.tool_version, run.row) == ("guidellm", "guidellm", "", "benchmark 1")
        assert (run.model_name, run.concurrency, run.request_rate_rps) == ("meta-llama/Llama-3.1-8B-Instruct", 4, None)
        assert (run.input_tokens_target, run.output_tokens_target) == (512, 256)
        assert run.started_at == datetime.fromtimestamp(1777451316.4, UTC)
        assert run.duration_s == pytest.approx(2.0 + 3.6 + 0.5)
        first = run.samples[0]
        assert (first.error_code, first.ttft_ms, first.e2e_ms) == ("", 100.0, pytest.approx(3600.0))
        assert first.mean_itl_ms == pytest.approx((3600.0 - 100.0) / 255)
        assert (first.input_tokens, first.output_tokens, first.start_offset_ms) == (512, 256, pytest.approx(100.0))

    def test_errored_and_incomplete_requests_are_kept_without_latencies(self):
        (run,) = parse_guidellm(json.dumps(guidellm_report(guidellm_v03_benchmark(mixed_guidellm_requests()))))
        failed = [(s.error_code, s.error_message, s.ttft_ms, s.e2e_ms, s.mean_itl_ms) for s in run.samples[3:]]
        assert failed == [
            ("errored", "HTTP 500: Internal Server Error", None, None, None),
            ("incomplete", "cancelled at the end of the benchmark", None, None, None),
        ]
        assert [s.index for s in run.samples] == [0, 1, 2, 3, 4]

    def test_it_reads_a_04_report(self):
        report = guidellm_report(guidellm_v04_benchmark(mixed_guidellm_requests()), version="0.4.0")
        (run,) = parse_guidellm(json.dumps(report))
        assert (run.model_name, run.tool_version, run.concurrency) == ("Qwen/Qwen3-8B", "0.4.0", 32)
        assert run.dataset == "['prompt_tokens=512,output_tokens=256']"
        assert (run.input_tokens_target, run.output_tokens_target) == (512, 256)
        assert run.samples[1].ttft_ms == 140.0 and run.samples[1].start_offset_ms == pytest.approx(600.0)
        assert run.samples[3].error_message == "HTTP 500: Internal Server Error"  # from info.error

    def test_a_04_request_without_computed_start_uses_its_timings(self):
        benchmark = guidellm_v04_benchmark([GuidellmRequest(offset_s=0.25)])
        benchmark["requests"]["successful"][0]["request_start_time"] = None
        (run,) = parse_guidellm(json.dumps(guidellm_report(benchmark, version="0.4.1")))
        assert run.samples[0].start_offset_ms == pytest.approx(250.0)

    def test_the_reported_summary_uses_the_successful_distribution(self):
        (run,) = parse_guidellm(json.dumps(guidellm_report(guidellm_v03_benchmark(mixed_guidellm_requests()))))
        reported = run.reported
        assert reported.metrics["ttft_ms"] == pytest.approx(
            {"count": 3, "mean": 120.0, "p50": 120.0, "stdev": 16.329932, "min": 100.0, "max": 140.0,
             "p90": 136.0, "p95": 138.0, "p99": 139.6}
        )  # fmt: skip
        assert reported.metrics["e2e_ms"]["mean"] == pytest.approx(3800.0)  # request_latency is in seconds
        assert (reported.request_count, reported.error_count) == (5, 2)
        assert reported.request_throughput_rps == pytest.approx(3 / 6.1)
        assert reported.output_token_throughput_tps == pytest.approx(3 * 256 / 6.1)
        assert (reported.input_tokens_mean, reported.output_tokens_mean) == (512.0, 256.0)
        assert run.samples_are_subset is False

    def test_an_empty_distribution_is_left_out(self):
        benchmark = guidellm_v03_benchmark([GuidellmRequest(status="errored", error="HTTP 500")])
        (run,) = parse_guidellm(json.dumps(guidellm_report(benchmark)))
        assert run.reported.metrics == {} and run.reported.error_count == 1

    def test_sampled_requests_mark_the_samples_a_subset(self):
        requests = [GuidellmRequest(offset_s=i * 0.1) for i in range(6)]
        (run,) = parse_guidellm(
            json.dumps(guidellm_report(guidellm_v04_benchmark(requests, listed=2), version="0.4.0"))
        )
        assert (len(run.samples), run.reported.request_count, run.samples_are_subset) == (2, 6, True)

    @pytest.mark.parametrize(
        ("strategy", "concurrency", "rate"),
        [
            ({"type_": "synchronous"}, 1, None),
            ({"type_": "concurrent", "streams": 16}, 16, None),
            ({"type_": "throughput", "max_concurrency": 512}, 512, None),
            ({"type_": "throughput", "max_concurrency": None}, None, None),
            ({"type_": "constant", "rate": 7.5, "initial_burst": True}, None, 7.5),
            ({"type_": "poisson", "rate": 2.0, "random_seed": 42}, None, 2.0),
        ],
    )
    def test_the_strategy_gives_the_concurrency_or_the_rate(self, strategy, concurrency, rate):
        for benchmark in (guidellm_v03_benchmark, guidellm_v04_benchmark):
            (run,) = parse_guidellm(json.dumps(guidellm_report(benchmark([GuidellmRequest()], strategy=strategy))))
            assert (run.concurrency, run.request_rate_rps) == (concurrency, rate)

    def test_a_sweep_gives_one_run_per_benchmark(self):
        requests = [GuidellmRequest()]
        report = guidellm_report(
            guidellm_v04_benchmark(requests, strategy={"type_": "synchronous"}),
            guidellm_v04_benchmark(requests, strategy={"type_": "throughput", "max_concurrency": 64}),
            guidellm_v04_benchmark(requests, strategy={"type_": "constant", "rate": 3.0}),
            version="0.4.0",
        )
        runs = parse_guidellm(json.dumps(report))
        assert [(r.row, r.concurrency, r.request_rate_rps) for r in runs] == [
            ("benchmark 1", 1, None), ("benchmark 2", 64, None), ("benchmark 3", None, 3.0),
        ]  # fmt: skip

    def test_bad_values_are_named(self):
        broken = guidellm_v03_benchmark(mixed_guidellm_requests())
        broken["requests"]["successful"][1]["time_to_first_token_ms"] = "slow"
        broken["metrics"]["request_latency"]["successful"]["mean"] = float("inf")
        no_metrics = guidellm_v03_benchmark([GuidellmRequest()])
        del no_metrics["metrics"]
        assert errors_of(parse_guidellm, json.dumps(guidellm_report(broken, no_metrics))) == [
            ("benchmark 1", "metrics.request_latency.successful.mean"),
            ("benchmark 1 successful request 2", "time_to_first_token_ms"),
            ("benchmark 2", "metrics"),
        ]

    def test_a_report_without_benchmarks_is_rejected(self):
        assert errors_of(parse_guidellm, json.dumps({"benchmarks": []})) == [("file", "benchmarks")]
