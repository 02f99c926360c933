"""Builders of benchmark result files in each tool's own format: its keys, units and quirks.

Each builder generates a file from the tool's documented schema (see docs/performance-formats.md)
and computes its aggregates from the requests it is given, the way the tool does.
"""

import json
from dataclasses import dataclass

import numpy as np

# ---- seed CSV ("LLM Benchmark Modeling Tool") ------------------------------------------------------

SEED_HEADER_LINE = (
    "provider_name,provider_model,traffic_mode,traffic_level,input_avg_len,input_stdev_len,input_min_len,"
    "input_max_len,input_total_tokens,output_avg_len,output_stdev_len,output_min_len,output_max_len,"
    "output_total_tokens,ttft_mean,ttft_stdev,ttft_p05,ttft_p50,ttft_p80,ttft_p95,ttft_p99,ttft_p999,"
    "ttft_distribution,user_tps_mean,user_tps_stdev,user_tps_p05,user_tps_p50,user_tps_p80,user_tps_p95,"
    "user_tps_p99,user_tps_p999,user_tps_distribution,e2e_mean,e2e_stdev,e2e_p05,e2e_p50,e2e_p80,e2e_p95,e2e_p99,"
    "e2e_p999,e2e_distribution,summary_total_num_requests,summary_total_elapsed_time_s,summary_job_level_tps,"
    "summary_actual_qps,summary_num_failed_requests,per_gpu_num_gpus,per_gpu_tps_mean,per_gpu_tps_stdev,"
    "acceptance_rate,hf_dataset_name"
)
SEED_SAMPLE_LINE = (  # a row of the tool's own sample file
    "together,graphon/graphon-Qwen3-Omni-30B-A3B-Instruct,qps,0.1,485.0,52.94,427,555,1455,582.67,36.44,553,634,"
    "1748,781.52,231.19,502.64,932.56,947.31,954.68,956.65,957.09,,189.27,7.23,183.66,184.80,193.60,197.99,199.17,"
    "199.43,,3868.14,375.91,3530.84,3705.06,4114.75,4319.59,4374.21,4386.50,,3,19.37,90.24,0.1549,0,1,0,0,,"
)
SEED_HEADER = SEED_HEADER_LINE.split(",")
SEED_VALUES = SEED_SAMPLE_LINE.split(",")


def seed_row(**cells: str) -> dict[str, str]:
    """One load point as the seed tool writes it (a QPS 0.1 run of three requests), with cells replaced."""
    return {**dict(zip(SEED_HEADER, SEED_VALUES, strict=True)), **cells}


def seed_csv(*rows: dict[str, str], header: list[str] | None = None) -> str:
    """The seed tool's CSV: its header and one line per row (missing cells are empty)."""
    header = header or SEED_HEADER
    lines = [",".join(header)] + [",".join(row.get(column, "") for column in header) for row in rows or [seed_row()]]
    return "\n".join(lines) + "\n"


# ---- LLMPerf ----------------------------------------------------------------------------------------


def llmperf_response(*, ttft_s=2.165774205001071, e2e_s=9.478942657000516, input_tokens=550, output_tokens=157, **keys):
    """One successful request of *_individual_responses.json; the ITL is LLMPerf's mean (TTFT included)."""
    return {
        "error_code": None,
        "error_msg": "",
        "inter_token_latency_s": e2e_s / output_tokens,
        "ttft_s": ttft_s,
        "end_to_end_latency_s": e2e_s,
        "request_output_throughput_token_per_s": output_tokens / e2e_s,
        "number_total_tokens": input_tokens + output_tokens,
        "number_output_tokens": output_tokens,
        "number_input_tokens": input_tokens,
        **keys,
    }


def llmperf_failure(code: int | None = 429, message: str = "Too Many Requests", input_tokens: int = 550) -> dict:
    """A failed request as LLMPerf records it: the code and text, zeros everywhere else."""
    return {
        "error_code": code,
        "error_msg": message,
        "inter_token_latency_s": 0,
        "ttft_s": 0,
        "end_to_end_latency_s": 0,
        "request_output_throughput_token_per_s": 0,
        "number_total_tokens": input_tokens,
        "number_output_tokens": 0,
        "number_input_tokens": input_tokens,
    }


def llmperf_summary(responses: list[dict], *, model="01-ai/Yi-1.5-34B-Chat", concurrency=4, wall_s=30.0, **keys):
    """*_summary.json computed from the responses like metrics_summary(): flat, over successful requests,
    with the integer token statistics written as strings (numpy ints dumped with default=str)."""
    ok = [r for r in responses if r["error_code"] is None]
    errors = [r for r in responses if r["error_code"] is not None]
    summary = {
        "version": "2023-08-31",
        "name": "01-ai-Yi-1-5-34B-Chat_550_150_summary",
        "model": model,
        "mean_input_tokens": 550,
        "stddev_input_tokens": 0,
        "mean_output_tokens": 150,
        "stddev_output_tokens": 0,
        "num_concurrent_requests": concurrency,
        "additional_sampling_params_temperature": "0.0",
    }
    for metric in (
        "inter_token_latency_s", "ttft_s", "end_to_end_latency_s", "request_output_throughput_token_per_s",
        "number_input_tokens", "number_output_tokens",
    ):  # fmt: skip
        values = np.array([r[metric] for r in ok], dtype=float)
        for q in (25, 50, 75, 90, 95, 99):
            summary[f"results_{metric}_quantiles_p{q}"] = float(np.percentile(values, q))
        summary[f"results_{metric}_mean"] = float(values.mean())
        for stat, value in (("min", values.min()), ("max", values.max())):
            summary[f"results_{metric}_{stat}"] = str(int(value)) if metric.startswith("number_") else float(value)
        summary[f"results_{metric}_stddev"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    codes = {}
    for r in errors:
        codes[r["error_code"]] = codes.get(r["error_code"], 0) + 1
    summary.update(
        results_num_requests_started=len(responses),
        results_error_rate=len(errors) / len(responses),
        results_number_errors=len(errors),
        results_error_code_frequency=str(codes),
        results_mean_output_throughput_token_per_s=sum(r["number_output_tokens"] for r in ok) / wall_s,
        results_num_completed_requests=len(ok),
        results_num_completed_requests_per_min=len(ok) / wall_s * 60,
        timestamp=1718208921,
    )
    return {**summary, **keys}


# ---- vLLM benchmark_serving.py / vllm bench serve -----------------------------------------------------


@dataclass
class VllmRequest:
    """One request of a vLLM run, in the units of its arrays: seconds, perf_counter() start."""

    ttft: float = 0.0975
    gaps: tuple[float, ...] = (0.034, 0.035)
    input_len: int = 200
    start: float = 81234.12
    error: str = ""

    @property
    def output_len(self) -> int:
        return 0 if self.error else len(self.gaps) + 1

    @property
    def latency(self) -> float:
        return 0.0 if self.error else self.ttft + sum(self.gaps)


def vllm_failure(start: float = 81235.02, error: str = "Too Many Requests") -> VllmRequest:
    """A failed request: vLLM keeps ttft 0.0, latency 0.0, no gaps and the reason."""
    return VllmRequest(ttft=0.0, gaps=(), start=start, error=error)


def vllm_result(requests: list[VllmRequest], *, detailed=True, latencies=True, **keys) -> dict:
    """A --save-result JSON: setup keys, totals, the ms percentile block computed over the successful
    requests, and the per-request arrays in seconds (`detailed`: --save-detailed; `latencies`: newer)."""
    ok = [r for r in requests if not r.error]
    duration = max(r.start + r.latency for r in requests) - min(r.start for r in requests)
    ttft = np.array([r.ttft for r in ok]) * 1000
    tpot = np.array([(r.latency - r.ttft) / (r.output_len - 1) for r in ok if r.output_len > 1]) * 1000
    itl = np.array([g for r in ok for g in r.gaps]) * 1000
    result = {
        "date": "20260722-060114", "endpoint_type": "openai", "backend": "openai", "label": None,
        "model_id": "Qwen/Qwen2.5-VL-3B-Instruct", "tokenizer_id": "Qwen/Qwen2.5-VL-3B-Instruct",
        "num_prompts": len(requests), "request_rate": 1.0, "burstiness": 1.0, "max_concurrency": None,
        "duration": duration, "completed": len(ok), "failed": len(requests) - len(ok),
        "total_input_tokens": sum(r.input_len for r in ok), "total_output_tokens": sum(r.output_len for r in ok),
        "request_throughput": len(ok) / duration, "request_goodput": None,
        "output_throughput": sum(r.output_len for r in ok) / duration,
        "total_token_throughput": sum(r.input_len + r.output_len for r in ok) / duration,
        "max_output_tokens_per_s": 308.0, "max_concurrent_requests": 14, "rtfx": 0.0,
    }  # fmt: skip
    for name, values in (("ttft", ttft), ("tpot", tpot), ("itl", itl)):
        result[f"mean_{name}_ms"] = float(values.mean())
        result[f"median_{name}_ms"] = float(np.median(values))
        result[f"std_{name}_ms"] = float(values.std())
        result[f"p99_{name}_ms"] = float(np.percentile(values, 99))
    if detailed:
        result.update(
            input_lens=[r.input_len for r in requests],
            output_lens=[r.output_len for r in requests],
            ttfts=[r.ttft for r in requests],
            itls=[list(r.gaps) for r in requests],
            generated_texts=["".join(" word" for _ in range(r.output_len)) for r in requests],
            errors=[r.error for r in requests],
            start_times=[r.start for r in requests],
        )
    if latencies:  # newer versions: kept even without --save-detailed
        result.update(latencies=[r.latency for r in requests], queue_times=[0.0 for _ in requests])
    return {**result, **keys}


def json_lines(*docs: dict) -> str:
    """What --append-result leaves: one JSON object a line."""
    return "".join(json.dumps(doc) + "\n" for doc in docs)


# ---- guidellm ---------------------------------------------------------------------------------------

GUIDELLM_START = 1777451316.4  # the benchmark's start (Unix seconds)
PERCENTILES = {"p001": 0.1, "p01": 1, "p05": 5, "p10": 10, "p25": 25, "p50": 50, "p75": 75, "p90": 90, "p95": 95,
               "p99": 99, "p999": 99.9}  # fmt: skip


@dataclass
class GuidellmRequest:
    """One request: its send time from the benchmark start, TTFT, latency (s) and tokens."""

    offset_s: float = 0.1
    ttft_ms: float = 100.0
    latency_s: float = 3.6
    prompt_tokens: int = 512
    output_tokens: int = 256
    status: str = "successful"  # | errored | incomplete
    error: str = ""

    @property
    def itl_ms(self) -> float:
        return (self.latency_s * 1000 - self.ttft_ms) / (self.output_tokens - 1)


def distribution(values: list[float]) -> dict:
    """guidellm's DistributionSummary; all zeros with count 0 when empty."""
    array = np.asarray(values, dtype=float)
    if not array.size:
        zeros = dict.fromkeys(("mean", "median", "mode", "variance", "std_dev", "min", "max", "total_sum"), 0.0)
        return {**zeros, "count": 0, "percentiles": dict.fromkeys(PERCENTILES, 0.0), "pdf": None}
    return {
        "mean": float(array.mean()), "median": float(np.median(array)), "mode": float(array[0]),
        "variance": float(array.var()), "std_dev": float(array.std()), "min": float(array.min()),
        "max": float(array.max()), "count": int(array.size), "total_sum": float(array.sum()),
        "percentiles": {key: float(np.percentile(array, q)) for key, q in PERCENTILES.items()}, "pdf": None,
    }  # fmt: skip


def _status_distribution(requests: list[GuidellmRequest], value, duration: float | None = None) -> dict:
    """{successful, incomplete, errored, total}; with `duration`, a rate (the value summed per second)."""
    by_status = {}
    for status in ("successful", "incomplete", "errored", None):
        chosen = [r for r in requests if status is None or r.status == status]
        values = [value(r) for r in chosen]
        by_status[status or "total"] = distribution([sum(values) / duration] if duration and values else values)
    return by_status


def _guidellm_metrics(requests: list[GuidellmRequest], duration: float) -> dict:
    return {
        "requests_per_second": _status_distribution(requests, lambda r: 1, duration),
        "request_concurrency": _status_distribution(requests, lambda r: 4),
        "request_latency": _status_distribution(requests, lambda r: r.latency_s),
        "prompt_token_count": _status_distribution(requests, lambda r: r.prompt_tokens),
        "output_token_count": _status_distribution(requests, lambda r: r.output_tokens),
        "time_to_first_token_ms": _status_distribution(requests, lambda r: r.ttft_ms),
        "time_per_output_token_ms": _status_distribution(requests, lambda r: r.latency_s * 1000 / r.output_tokens),
        "inter_token_latency_ms": _status_distribution(requests, lambda r: r.itl_ms),
        "output_tokens_per_second": _status_distribution(requests, lambda r: r.output_tokens, duration),
        "tokens_per_second": _status_distribution(requests, lambda r: r.prompt_tokens + r.output_tokens, duration),
    }


def _totals(requests: list[GuidellmRequest]) -> dict:
    counts = {s: sum(r.status == s for r in requests) for s in ("successful", "incomplete", "errored")}
    return {**counts, "total": len(requests)}


def _v03_request(r: GuidellmRequest, n: int) -> dict:
    start = GUIDELLM_START + r.offset_s
    first, end = start + r.ttft_ms / 1000, start + r.latency_s
    item = {
        "type_": "generative_text_response" if r.status == "successful" else "generative_text_error",
        "request_id": f"req-{n}", "request_type": "text_completions",
        "scheduler_info": {"requested": True, "completed": r.status == "successful", "errored": r.status == "errored",
                           "canceled": r.status == "incomplete", "targeted_start_time": start - 0.001,
                           "queued_time": start - 0.01, "dequeued_time": start - 0.005, "scheduled_time": start - 0.002,
                           "worker_start": start - 0.001, "request_start": start, "request_end": end,
                           "worker_end": end + 0.001, "process_id": 0},
        "prompt": "tell me a story", "output": "once upon a time", "prompt_tokens": r.prompt_tokens,
        "output_tokens": r.output_tokens, "start_time": start, "end_time": end, "first_token_time": first,
        "last_token_time": end, "request_latency": r.latency_s, "time_to_first_token_ms": r.ttft_ms,
        "time_per_output_token_ms": r.latency_s * 1000 / r.output_tokens, "inter_token_latency_ms": r.itl_ms,
        "tokens_per_second": (r.prompt_tokens + r.output_tokens) / r.latency_s,
        "output_tokens_per_second": r.output_tokens / r.latency_s,
    }  # fmt: skip
    if r.status != "successful":
        item["error"] = r.error
    return item


def _v04_request(r: GuidellmRequest, n: int) -> dict:
    start = GUIDELLM_START + r.offset_s
    first, end = start + r.ttft_ms / 1000, start + r.latency_s
    return {
        "type_": "generative_request_stats", "request_id": f"req-{n}", "response_id": f"cmpl-{n}",
        "request_args": "{'stream': True, 'max_tokens': 256}", "output": "once upon a time",
        "info": {"request_id": f"req-{n}", "status": "completed" if r.status == "successful" else r.status,
                 "scheduler_node_id": 0, "scheduler_process_id": 0, "scheduler_start_time": GUIDELLM_START,
                 "timings": {"targeted_start": start, "queued": start - 0.01, "dequeued": start - 0.005,
                             "scheduled_at": start - 0.002, "resolve_start": start, "request_start": start,
                             "first_request_iteration": first, "first_token_iteration": first,
                             "last_token_iteration": end, "last_request_iteration": end, "request_iterations": 1,
                             "token_iterations": r.output_tokens, "request_end": end, "resolve_end": end,
                             "finalized": end},
                 "error": r.error or None, "traceback": None},
        "input_metrics": {"text_tokens": r.prompt_tokens}, "output_metrics": {"text_tokens": r.output_tokens},
        "request_start_time": start, "request_end_time": end, "request_latency": r.latency_s,
        "prompt_tokens": r.prompt_tokens, "output_tokens": r.output_tokens,
        "total_tokens": r.prompt_tokens + r.output_tokens, "time_to_first_token_ms": r.ttft_ms,
        "time_per_output_token_ms": r.latency_s * 1000 / r.output_tokens, "inter_token_latency_ms": r.itl_ms,
        "tokens_per_second": (r.prompt_tokens + r.output_tokens) / r.latency_s,
        "output_tokens_per_second": r.output_tokens / r.latency_s,
    }  # fmt: skip


def _listed(requests: list[GuidellmRequest], listed: int | None, render) -> dict:
    """The requests block, by status; `listed` keeps only the first N of each status (guidellm samples)."""
    return {
        status: [render(r, n) for n, r in enumerate(requests) if r.status == status][:listed]
        for status in ("successful", "incomplete", "errored")
    }


def guidellm_v03_benchmark(requests: list[GuidellmRequest], *, strategy: dict | None = None, listed=None) -> dict:
    """A 0.2/0.3 GenerativeBenchmark: args/run_stats/worker/request_loader, totals at the top."""
    duration = max(r.offset_s + r.latency_s for r in requests) + 0.5
    strategy = strategy or {"type_": "concurrent", "streams": 4}
    return {
        "type_": "generative_benchmark", "id_": "8d3a", "run_id": "0f7e",
        "args": {"profile": {"type_": strategy["type_"], "completed_strategies": 1, "measured_rates": [],
                             "measured_concurrencies": [], "strategy_types": [strategy["type_"]]},
                 "strategy_index": 0, "strategy": strategy, "max_number": None, "max_duration": 30.0,
                 "warmup_number": None, "warmup_duration": None, "cooldown_number": None, "cooldown_duration": None},
        "run_stats": {"start_time": GUIDELLM_START, "end_time": GUIDELLM_START + duration,
                      "requests_made": _totals(requests), "queued_time_avg": 0.01, "request_time_avg": 3.6},
        "worker": {"type_": "generative_requests_worker", "backend_type": "openai_http",
                   "backend_target": "http://localhost:8000", "backend_model": "meta-llama/Llama-3.1-8B-Instruct",
                   "backend_info": {}},
        "request_loader": {"type_": "generative_request_loader", "data": "prompt_tokens=512,output_tokens=256",
                           "data_args": None, "processor": "meta-llama/Llama-3.1-8B-Instruct", "processor_args": None},
        "extras": {}, "start_time": GUIDELLM_START, "end_time": GUIDELLM_START + duration, "duration": duration,
        "request_totals": _totals(requests),
        "request_samples": None if listed is None else {"successful": listed, "incomplete": listed, "errored": listed},
        "metrics": _guidellm_metrics(requests, duration),
        "requests": _listed(requests, listed, _v03_request),
    }  # fmt: skip


def guidellm_v04_benchmark(requests: list[GuidellmRequest], *, strategy: dict | None = None, listed=None) -> dict:
    """A 0.4 GenerativeBenchmark: config (strategy, backend, requests), totals inside metrics."""
    duration = max(r.offset_s + r.latency_s for r in requests) + 0.5
    strategy = strategy or {"type_": "concurrent", "streams": 32, "max_concurrency": 32, "worker_count": 10}
    return {
        "type_": "generative_benchmark",
        "config": {"id_": "5b1c", "run_id": "7313a0e4", "run_index": 0, "strategy": strategy,
                   "constraints": {"max_seconds": 30}, "sample_requests": listed,
                   "warmup": {"percent": None, "value": None, "mode": "prefer_duration"},
                   "cooldown": {"percent": None, "value": None, "mode": "prefer_duration"},
                   "prefer_response_metrics": True, "profile": {"type_": strategy["type_"]},
                   "requests": {"data": "['prompt_tokens=512,output_tokens=256']", "processor": "m"},
                   "backend": {"target": "http://host:8000", "model": "Qwen/Qwen3-8B"}, "environment": {}},
        "scheduler_state": {"start_time": GUIDELLM_START, "successful_requests": _totals(requests)["successful"]},
        "scheduler_metrics": {"start_time": GUIDELLM_START, "requests_made": _totals(requests)},
        "start_time": GUIDELLM_START, "end_time": GUIDELLM_START + duration, "duration": duration,
        "warmup_duration": 0.0, "cooldown_duration": 0.0,
        "metrics": {"request_totals": _totals(requests), **_guidellm_metrics(requests, duration)},
        "requests": _listed(requests, listed, _v04_request),
    }  # fmt: skip


def guidellm_report(*benchmarks: dict, version: str | None = None) -> dict:
    """The report file: 0.2/0.3 have only `benchmarks`; 0.4+ add metadata and args (pass `version`)."""
    if version is None:
        return {"benchmarks": list(benchmarks)}
    return {
        "metadata": {"version": 1, "guidellm_version": version, "python_version": "3.12.3", "platform": "Linux"},
        "args": {"target": "http://host:8000", "profile": "concurrent", "rate": [32],
                 "data": ["prompt_tokens=512,output_tokens=256"], "max_seconds": 30},
        "benchmarks": list(benchmarks),
    }  # fmt: skip


# ---- llmbench JSON (ours) -------------------------------------------------------------------------------


def llmbench_sample(index: int, **keys) -> dict:
    """One request of our format: a successful 128-token answer."""
    return {
        "index": index, "ttft_ms": 120.0 + index, "e2e_ms": 2600.0 + index, "input_tokens": 512,
        "output_tokens": 128, "itl_ms": [19.5, 19.6, 19.4], "start_offset_ms": 250.0 * index, **keys,
    }  # fmt: skip


def llmbench_run(**keys) -> dict:
    """One run of our format with every key used."""
    return {
        "name": "llama 8b c16", "model": "meta-llama/Llama-3.1-8B-Instruct", "quantization": "AWQ",
        "provider": "self-hosted", "tool": "llmbench-loadgen", "tool_version": "0.1.0", "concurrency": 16,
        "request_rate_rps": None, "input_tokens_target": 512, "output_tokens_target": 128, "dataset": "sharegpt",
        "started_at": "2026-03-01T10:00:00+01:00", "duration_s": 60.5, "tags": ["nightly", "h100"],
        "notes": "first run after driver update",
        "hardware": {"name": "1x H100 SXM", "accelerator": "NVIDIA H100 80GB SXM", "accelerator_count": 1,
                     "memory_per_device_gb": 80, "interconnect": "NVLink", "cpu": "Xeon 8480+", "ram_gb": 256,
                     "hourly_cost_usd": 2.49},
        "deployment": {"name": "vllm tp1", "engine": "vllm", "engine_version": "0.8.5", "tensor_parallel": 1,
                       "pipeline_parallel": 1, "max_batch_size": 256, "kv_cache_dtype": "fp8",
                       "settings": {"enable_prefix_caching": True}},
        "samples": [llmbench_sample(0), llmbench_sample(1)],
        **keys,
    }  # fmt: skip


def llmbench_file(*runs: dict) -> dict:
    return {"format": "llmbench.performance/1", "runs": list(runs) or [llmbench_run()]}
