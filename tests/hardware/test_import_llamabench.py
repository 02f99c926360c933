"""llama.cpp llama-bench results in each output (-o json, jsonl, csv, md): every test row is a run at
concurrency 1 with the tool's tokens/s, on the GPU it names, filed under the model and quantization of
model_type; GPUs × quantized variants land in the performance grid. Bad input names row and field."""

import csv
import io
import json

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from apps.hardware.import_llamabench import model_and_quantization
from apps.hardware.importers import PerformanceFileError, detect_format, parse_performance_file
from apps.hardware.models import Deployment, HardwareProfile, PerformanceRun, RequestSample
from apps.hardware.selectors import Workload, performance_grid
from apps.scores.models import ModelVariant
from tests.factories import HardwareProfileFactory

GPUS = {"NVIDIA GeForce RTX 4090": 1.0, "NVIDIA H100 80GB HBM3": 1.6}  # speed relative to the 4090
QUANTS = {  # model_type → (file, size in bytes, speed relative to Q4_K_M)
    "llama 8B Q4_K - Medium": ("Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf", 4_920_733_696, 1.0),
    "llama 8B Q8_0": ("Meta-Llama-3.1-8B-Instruct-Q8_0.gguf", 8_540_770_304, 0.7),
}
FIELDS = (
    "build_commit", "build_number", "cpu_info", "gpu_info", "backends", "model_filename", "model_type", "model_size",
    "model_n_params", "n_batch", "n_ubatch", "n_threads", "cpu_mask", "cpu_strict", "poll", "type_k", "type_v",
    "n_gpu_layers", "n_cpu_moe", "split_mode", "main_gpu", "no_kv_offload", "flash_attn", "devices", "tensor_split",
    "tensor_buft_overrides", "use_mmap", "embeddings", "no_op_offload", "n_prompt", "n_gen", "n_depth", "test_time",
    "avg_ns", "stddev_ns", "avg_ts", "stddev_ts",
)  # fmt: skip


def bench_row(
    gpu: str = "NVIDIA GeForce RTX 4090",
    model_type: str = "llama 8B Q4_K - Medium",
    *,
    n_prompt: int = 0,
    n_gen: int = 128,
    n_depth: int = 0,
    base_ns: float = 1_000_000_000.0,
    **overrides,
) -> dict:
    """One test as llama-bench computes it: repetitions' times, their tokens/s, mean and sample stdev."""
    filename, size, speed = QUANTS.get(model_type, ("model.gguf", 1_000_000_000, 1.0))
    factor = speed * GPUS.get(gpu, 1.0)
    samples_ns = [int(base_ns * k / factor) for k in (1.00, 1.02, 0.99, 1.01, 0.98)]
    samples_ts = [1e9 * (n_prompt + n_gen) / t for t in samples_ns]
    row = {
        "build_commit": "8cf427ff", "build_number": 5163, "cpu_info": "AMD EPYC 9654 96-Core Processor",
        "gpu_info": gpu, "backends": "CUDA", "model_filename": f"models/{filename}", "model_type": model_type,
        "model_size": size, "model_n_params": 8_030_261_248, "n_batch": 2048, "n_ubatch": 512, "n_threads": 48,
        "cpu_mask": "0x0", "cpu_strict": False, "poll": 50, "type_k": "f16", "type_v": "f16", "n_gpu_layers": 99,
        "n_cpu_moe": 0, "split_mode": "layer", "main_gpu": 0, "no_kv_offload": False, "flash_attn": 1,
        "devices": "auto", "tensor_split": "0.00", "tensor_buft_overrides": "none", "use_mmap": True,
        "embeddings": False, "no_op_offload": 0, "n_prompt": n_prompt, "n_gen": n_gen, "n_depth": n_depth,
        "test_time": "2025-04-24T11:58:50Z", "avg_ns": int(np.mean(samples_ns)),
        "stddev_ns": int(np.std(samples_ns, ddof=1)), "avg_ts": float(np.mean(samples_ts)),
        "stddev_ts": float(np.std(samples_ts, ddof=1)), "samples_ns": samples_ns, "samples_ts": samples_ts,
    }  # fmt: skip
    row.update(overrides)
    return row


def grid_rows() -> list[dict]:
    """Two GPUs × two quantizations × (pp512, tg128): llama-bench's default tests on each machine."""
    return [bench_row(gpu, model_type, n_prompt=n_prompt, n_gen=n_gen, base_ns=base_ns)
            for gpu in GPUS for model_type in QUANTS
            for n_prompt, n_gen, base_ns in ((512, 0, 70_000_000.0), (0, 128, 1_070_000_000.0))]  # fmt: skip


def as_json(rows: list[dict]) -> str:
    return json.dumps(rows, indent=2)


def as_jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


def as_csv(rows: list[dict]) -> str:
    """Every value quoted, booleans as 0/1, no repetitions: as llama-bench's csv printer writes them."""
    out = io.StringIO()
    writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n")
    out.write(",".join(FIELDS) + "\n")
    for row in rows:
        writer.writerow([int(v) if isinstance(v, bool) else f"{v:.6f}" if isinstance(v, float) else v
                         for v in (row[f] for f in FIELDS)])  # fmt: skip
    return out.getvalue()


def md_test(row: dict) -> str:
    test = "pp{n_prompt}".format(**row) if not row["n_gen"] else "tg{n_gen}".format(**row)
    if row["n_prompt"] and row["n_gen"]:
        test = "pp{n_prompt}+tg{n_gen}".format(**row)
    return test + (f" @ d{row['n_depth']}" if row["n_depth"] else "")


def as_md(rows: list[dict], *, preamble: str = "") -> str:
    """The default table: model, size, params, backend, ngl, test, t/s, and the build line under it."""
    lines = [
        "| model                          |       size |     params | backend    | ngl |            test |"
        "                  t/s |",
        "| ------------------------------ | ---------: | ---------: | ---------- | --: | --------------: |"
        " -------------------: |",
    ]
    for row in rows:
        lines.append(f"| {row['model_type']:<30} | {row['model_size'] / 1024**3:7.2f} GiB | "
                     f"{row['model_n_params'] / 1e9:8.2f} B | {row['backends']:<10} | {row['n_gpu_layers']:>3} | "
                     f"{md_test(row):>15} | {row['avg_ts']:13.2f} ± {row['stddev_ts']:.2f} |")  # fmt: skip
    return preamble + "\n".join(lines) + "\n\nbuild: 8cf427ff (5163)\n"


OUTPUTS = {"json": as_json, "jsonl": as_jsonl, "csv": as_csv, "md": as_md}


def parsed_runs(text: str) -> list:
    fmt, runs = parse_performance_file(text.encode())
    assert fmt == "llama_bench"
    return runs


def errors_of(text: str, **kwargs) -> list[tuple]:
    with pytest.raises(PerformanceFileError) as caught:
        parse_performance_file(text.encode(), **kwargs)
    return [(e.row, e.field) for e in caught.value.errors]


class TestDetection:
    @pytest.mark.parametrize("output", OUTPUTS)
    def test_each_output_is_recognised_from_its_content(self, output):
        assert detect_format(OUTPUTS[output](grid_rows())) == "llama_bench"

    def test_a_table_pasted_after_the_device_log_is_recognised(self):
        log = "ggml_cuda_init: found 1 CUDA devices:\n  Device 0: NVIDIA GeForce RTX 4090, compute capability 8.9\n"
        assert detect_format(as_md(grid_rows(), preamble=log)) == "llama_bench"


class TestModelType:
    @pytest.mark.parametrize(
        ("model_type", "expected"),
        [
            ("qwen2 7B Q4_K - Medium", ("qwen2 7B", "Q4_K_M")),
            ("llama 7B mostly Q4_0", ("llama 7B", "Q4_0")),
            ("llama 8B BF16", ("llama 8B", "BF16")),
            ("llama 8B all F32", ("llama 8B", "F32")),
            ("qwen3moe 30B.A3B IQ4_XS - 4.25 bpw", ("qwen3moe 30B.A3B", "IQ4_XS")),
            ("gpt-oss 20B MXFP4 MoE", ("gpt-oss 20B", "MXFP4_MOE")),
            ("llama 8B Q8_0 (guessed)", ("llama 8B", "Q8_0")),
            ("llama 8B Q9_K - Huge", ("llama 8B", "Q9_K")),  # a type newer than the table: its first part
            ("llama", None),
        ],
    )
    def test_model_and_quantization_come_from_model_type(self, model_type, expected):
        assert model_and_quantization(model_type) == expected


class TestJson:
    """-o json: the tool's mean and stdev, and every repetition."""

    def test_a_generation_test_gives_output_tokens_per_second(self):
        row = bench_row(n_gen=128, base_ns=1_070_000_000.0)
        (run,) = parsed_runs(as_json([row]))
        assert (run.model_name, run.quantization, run.concurrency) == ("llama 8B", "Q4_K_M", 1)
        assert (run.input_tokens_target, run.output_tokens_target) == (0, 128)
        assert run.reported.output_token_throughput_tps == row["avg_ts"]
        output_tps = run.reported.metrics["output_tps"]
        assert (output_tps["mean"], output_tps["stdev"], output_tps["count"]) == (row["avg_ts"], row["stddev_ts"], 5)
        assert output_tps["min"] == min(row["samples_ts"]) and output_tps["max"] == max(row["samples_ts"])
        assert output_tps["p50"] == np.median(row["samples_ts"])
        tpot = run.reported.metrics["tpot_ms"]
        assert tpot["mean"] == pytest.approx(row["avg_ns"] / 128 / 1e6)
        assert tpot["max"] == pytest.approx(max(row["samples_ns"]) / 128 / 1e6)
        assert (run.reported.request_count, run.reported.error_count) == (5, 0)
        assert run.duration_s == pytest.approx(sum(row["samples_ns"]) / 1e9)
        assert run.started_at.isoformat() == "2025-04-24T11:58:50+00:00"
        assert (run.tool, run.tool_version, run.provider) == ("llama-bench", "b5163 (8cf427ff)", "CUDA")
        assert "Repetitions (tokens/s): " + ", ".join(f"{v:.2f}" for v in row["samples_ts"]) in run.notes
        assert "flash attention on" in run.notes and "GPU layers 99" in run.notes

    def test_a_prompt_test_gives_prompt_tokens_per_second_not_output(self):
        row = bench_row(n_prompt=512, n_gen=0, base_ns=70_000_000.0)
        (run,) = parsed_runs(as_json([row]))
        assert run.reported.metrics["prompt_tps"]["mean"] == row["avg_ts"]
        assert "output_tps" not in run.reported.metrics and run.reported.output_token_throughput_tps is None
        assert (run.input_tokens_target, run.output_tokens_target, run.name) == (512, 0, "llama 8B Q4_K_M pp512")

    def test_a_combined_test_gives_tokens_per_second_and_the_request_latency(self):
        row = bench_row(n_prompt=512, n_gen=128, base_ns=1_140_000_000.0)
        (run,) = parsed_runs(as_json([row]))
        assert run.reported.metrics["total_tps"]["mean"] == row["avg_ts"]
        assert run.reported.metrics["e2e_ms"]["mean"] == pytest.approx(row["avg_ns"] / 1e6)
        assert run.reported.output_token_throughput_tps is None and run.name.endswith("pp512+tg128")

    def test_a_test_at_depth_counts_the_context_as_input(self):
        (run,) = parsed_runs(as_json([bench_row(n_gen=128, n_depth=4096)]))
        assert (run.input_tokens_target, run.output_tokens_target) == (4096, 128)
        assert run.name.endswith("tg128 @ d4096")

    def test_the_gpu_is_the_hardware(self):
        (run,) = parsed_runs(as_json([bench_row("NVIDIA H100 80GB HBM3")]))
        assert run.hardware == {"name": "NVIDIA H100 80GB HBM3", "accelerator": "NVIDIA H100 80GB HBM3",
                                "accelerator_count": 1, "cpu": "AMD EPYC 9654 96-Core Processor"}  # fmt: skip
        assert run.deployment == {"name": "llama.cpp CUDA b5163", "engine": "llama.cpp",
                                  "engine_version": "b5163 (8cf427ff)"}  # fmt: skip

    def test_several_gpus_are_counted(self):
        (run,) = parsed_runs(as_json([bench_row("NVIDIA RTX A6000, NVIDIA RTX A6000")]))
        assert (run.hardware["name"], run.hardware["accelerator_count"]) == ("2× NVIDIA RTX A6000", 2)

    def test_without_offload_the_cpu_is_the_hardware(self):
        row = bench_row(gpu="", backends="CPU", n_gpu_layers=0)
        (run,) = parsed_runs(as_json([row]))
        assert run.hardware == {"name": "AMD EPYC 9654 96-Core Processor", "cpu": "AMD EPYC 9654 96-Core Processor"}

    def test_a_grid_of_gpus_and_quantizations_is_one_run_per_row(self):
        runs = parsed_runs(as_json(grid_rows()))
        assert len(runs) == 8
        cells = {(r.hardware["name"], r.quantization, r.output_tokens_target) for r in runs}
        assert cells == {(gpu, quant, out) for gpu in GPUS for quant in ("Q4_K_M", "Q8_0") for out in (0, 128)}


class TestOtherOutputs:
    """JSON Lines, CSV and markdown give the same runs; CSV and markdown have no repetitions."""

    def test_json_lines_are_the_json_rows(self):
        by_json, by_jsonl = parsed_runs(as_json(grid_rows())), parsed_runs(as_jsonl(grid_rows()))
        assert [r.reported for r in by_jsonl] == [r.reported for r in by_json]
        assert [r.row for r in by_jsonl][:2] == ["line 1", "line 2"] and by_json[0].row == "test 1"

    def test_csv_gives_the_mean_and_stdev(self):
        rows = grid_rows()
        runs = parsed_runs(as_csv(rows))
        tg = runs[1]
        assert (tg.model_name, tg.quantization, tg.hardware["name"], tg.row) == (
            "llama 8B",
            "Q4_K_M",
            "NVIDIA GeForce RTX 4090",
            3,
        )
        assert tg.reported.output_token_throughput_tps == pytest.approx(rows[1]["avg_ts"], abs=1e-6)
        assert tg.reported.metrics["output_tps"] == {
            "mean": pytest.approx(rows[1]["avg_ts"], abs=1e-6),
            "stdev": pytest.approx(rows[1]["stddev_ts"], abs=1e-6),
        }
        assert tg.reported.request_count is None and tg.duration_s is None
        assert "flash attention on" in tg.notes

    def test_markdown_reads_mean_and_stdev_size_and_build(self):
        rows = grid_rows()[:2]
        prompt, generation = parsed_runs(as_md(rows))
        assert prompt.reported.metrics["prompt_tps"] == {
            "mean": round(rows[0]["avg_ts"], 2),
            "stdev": round(rows[0]["stddev_ts"], 2),
        }
        assert generation.reported.output_token_throughput_tps == round(rows[1]["avg_ts"], 2)
        assert (generation.model_name, generation.quantization, generation.row) == ("llama 8B", "Q4_K_M", 4)
        assert generation.tool_version == "b5163 (8cf427ff)" and generation.hardware is None  # the table has no GPU
        assert generation.reported.extra["model_size_bytes"] == pytest.approx(4.58 * 1024**3)
        assert generation.reported.extra["model_n_params"] == pytest.approx(8.03e9)

    def test_markdown_of_older_builds_is_read(self):
        table = ("| model | size | params | backend | ngl | test | t/s |\n| --- | ---: | ---: | --- | --: | --- | ---: |\n"
                 "| llama 7B mostly Q4_0 | 3.56 GiB | 6.74 B | CUDA | 99 | pp 512 | 2368.80 ± 93.24 |\n"
                 "| llama 7B mostly Q4_0 | 3.56 GiB | 6.74 B | CUDA | 99 | tg 128 @ d512 | 131.42 ± 0.59 |\n")  # fmt: skip
        prompt, generation = parsed_runs(table)
        assert (prompt.quantization, prompt.input_tokens_target, prompt.reported.metrics["prompt_tps"]["mean"]) == (
            "Q4_0",
            512,
            2368.80,
        )
        assert (generation.input_tokens_target, generation.output_tokens_target) == (512, 128)


class TestBadInput:
    """A bad row names its line (CSV, markdown) or item (JSON) and its field; nothing is returned."""

    def test_a_non_numeric_avg_ts_in_csv_is_named_by_its_line(self):
        text = as_csv(grid_rows()[:2]).replace(f'"{grid_rows()[1]["avg_ts"]:.6f}"', '"fast"')
        assert errors_of(text) == [(3, "avg_ts")]

    def test_a_non_numeric_avg_ts_in_json_is_named_by_its_test(self):
        rows = grid_rows()[:2]
        rows[1]["avg_ts"] = "fast"
        assert errors_of(as_json(rows)) == [("test 2", "avg_ts")]

    def test_a_bad_repetition_is_named_by_its_position(self):
        rows = [bench_row(samples_ts=[128.0, "x", 127.0, 126.0, 129.0])]
        assert errors_of(as_jsonl(rows)) == [("line 1", "samples_ts[1]")]

    def test_a_markdown_rate_that_is_not_mean_and_stdev_is_named(self):
        text = as_md(grid_rows()[:2])
        text = text.replace(f"{grid_rows()[1]['avg_ts']:13.2f} ± {grid_rows()[1]['stddev_ts']:.2f}", "fast")
        assert errors_of(text) == [(4, "t/s")]

    def test_a_markdown_test_that_is_not_a_test_is_named(self):
        assert errors_of(as_md(grid_rows()[:1]).replace("pp512", "warmup")) == [(3, "test")]

    def test_a_row_that_tests_nothing_is_named(self):
        assert errors_of(as_json([bench_row(n_prompt=0, n_gen=0)])) == [("test 1", "n_prompt")]

    def test_a_model_type_without_a_type_is_named(self):
        assert errors_of(as_json([bench_row(model_type="llama")])) == [("test 1", "model_type")]

    def test_an_empty_file_is_rejected(self):
        assert errors_of("", file_format="llama_bench") == [("file", "file")]

    def test_a_json_that_is_not_llama_bench_names_what_is_missing(self):
        assert errors_of('[{"hello": "world"}]', file_format="llama_bench") == [
            ("test 1", "model_type"),
            ("test 1", "avg_ts"),
        ]

    def test_a_csv_that_is_not_llama_bench_names_the_header(self):
        assert errors_of("model,score\nm,1\n", file_format="llama_bench") == [(1, "header")]


@pytest.mark.django_db
class TestUpload:
    """One upload stores a run per row, with its GPU and variant, and the grid shows GPUs × quantizations."""

    URL = "/api/v1/performance/upload"

    def test_a_json_upload_fills_the_grid_in_tokens_per_second(self, member_api, viewer_api, team):
        rows = grid_rows()
        upload = SimpleUploadedFile("llama-bench.json", as_json(rows).encode(), content_type="application/json")
        response = member_api.post(self.URL, {"file": upload}, format="multipart")
        assert response.status_code == 201, response.json()
        assert response.json()["format"] == "llama_bench" and len(response.json()["runs"]) == 8
        assert not RequestSample.objects.exists()
        assert sorted(HardwareProfile.objects.values_list("name", "accelerator_count")) == [
            ("NVIDIA GeForce RTX 4090", 1),
            ("NVIDIA H100 80GB HBM3", 1),
        ]
        assert sorted(map(str, ModelVariant.objects.all())) == ["llama 8B · Q4_K_M", "llama 8B · Q8_0"]
        assert Deployment.objects.get().engine == "llama.cpp"

        grid = viewer_api.get("/api/v1/performance/grid",
                              {"metric": "output_throughput_tps", "workload": "c1-in0-out128"}).json()  # fmt: skip
        variants, boxes = ({item["id"]: item["name"] for item in grid[key]} for key in ("variants", "hardware"))
        cells = {(variants[c["variant_id"]], boxes[c["hardware_id"]]): c["value"] for c in grid["cells"]}
        expected = {(f"llama 8B · {'Q4_K_M' if 'Medium' in r['model_type'] else 'Q8_0'}", r["gpu_info"]): r["avg_ts"]
                    for r in rows if r["n_gen"]}  # fmt: skip
        assert cells == pytest.approx(expected) and len(cells) == 4
        assert grid["workload"]["label"] == "concurrency 1, 0 input / 128 output tokens"

    def test_the_prompt_tests_are_a_workload_of_their_own(self, member_api, team):
        member_api.post(self.URL, {"file": SimpleUploadedFile("b.jsonl", as_jsonl(grid_rows()).encode())},
                        format="multipart")  # fmt: skip
        grid = performance_grid(team=team, metric="output_throughput_tps")
        assert {(w.key, n) for w, n in grid.workloads} == {("c1-in0-out128", 4), ("c1-in512-out0", 4)}
        prompt = PerformanceRun.objects.filter(input_tokens_target=512).select_related("summary")
        assert all(r.summary.source == "reported" and r.summary.metrics["prompt_tps"]["mean"] > 1000 for r in prompt)
        assert {
            c.value
            for c in performance_grid(
                team=team, metric="output_throughput_tps", workload=Workload(1, None, 512, 0)
            ).cells.values()
        } == {None}

    def test_the_preview_lists_the_runs_and_writes_nothing(self, member_client):
        upload = SimpleUploadedFile("llama-bench.json", as_json(grid_rows()).encode())
        response = member_client.post(
            reverse("hardware:upload"), {"file": upload, "preview": "1"}, headers={"HX-Request": "true"}
        )
        content = response.content.decode()
        assert response.status_code == 200 and "8 run(s)" in content and "llama 8B · Q8_0" in content
        assert "NVIDIA H100 80GB HBM3" in content and not PerformanceRun.objects.exists()

    def test_a_markdown_upload_takes_the_hardware_from_the_form(self, member_client, team):
        hardware = HardwareProfileFactory(team=team, name="workstation")
        upload = SimpleUploadedFile("bench.md", as_md(grid_rows()[:2]).encode())
        response = member_client.post(reverse("hardware:upload"), {"file": upload, "hardware": hardware.pk})
        assert response.status_code == 302 and response["Location"] == reverse("hardware:runs")
        assert set(PerformanceRun.objects.values_list("hardware__name", flat=True)) == {"workstation"}
        run = PerformanceRun.objects.get(output_tokens_target=128)
        page = member_client.get(reverse("hardware:run", args=[run.pk])).content.decode()
        assert "llama-bench tg128" in page and "Output tokens/s per request" in page

    def test_a_bad_row_is_400_naming_it_and_stores_nothing(self, member_api):
        rows = grid_rows()
        rows[5]["avg_ts"] = "fast"
        response = member_api.post(self.URL, {"file": SimpleUploadedFile("b.json", as_json(rows).encode())},
                                   format="multipart")  # fmt: skip
        assert response.status_code == 400
        assert [(e["row"], e["field"]) for e in response.json()["errors"]] == [("test 6", "avg_ts")]
        assert not PerformanceRun.objects.exists() and not HardwareProfile.objects.exists()

    def test_a_viewer_cannot_upload(self, viewer_api):
        response = viewer_api.post(self.URL, {"file": SimpleUploadedFile("b.json", as_json(grid_rows()).encode())},
                                   format="multipart")  # fmt: skip
        assert response.status_code == 403 and not PerformanceRun.objects.exists()
