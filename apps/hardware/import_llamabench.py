"""llama.cpp `llama-bench` results, in any of its printable outputs: `-o json`, `-o jsonl`, `-o csv`
and `-o md` (the default table).

Each test row is one run at concurrency 1 (llama-bench runs one sequence): a prompt-processing test
(pp512) gives prompt tokens/s, a generation test (tg128) output tokens/s, a combined test
(pp512+tg128) tokens/s of both. There are no requests, only the tool's mean and standard deviation
of its repetitions (and, in JSON, each repetition): a reported summary. Model and quantization come
from `model_type` ("qwen2 7B Q4_K - Medium" is qwen2 7B in Q4_K_M), the hardware from `gpu_info`
(or `cpu_info` without GPU offload). What is read is described in docs/performance-formats.md."""

import csv
import io
import re
from datetime import UTC, datetime
from typing import Any

import numpy as np

from apps.hardware.importers import PerformanceFileError, _json, _present, _Reader, _reject
from apps.hardware.parsed import ParsedRun, ReportedSummary
from llmbench.uploads import ErrorList

# llama.cpp's names of its file types (llama_model_ftype_name) → the usual short label.
FTYPES = {
    "all F32": "F32", "F16": "F16", "BF16": "BF16", "Q4_0": "Q4_0", "Q4_1": "Q4_1", "Q5_0": "Q5_0", "Q5_1": "Q5_1",
    "Q8_0": "Q8_0", "MXFP4 MoE": "MXFP4_MOE", "Q2_K - Medium": "Q2_K", "Q2_K - Small": "Q2_K_S",
    "Q3_K - Small": "Q3_K_S", "Q3_K - Medium": "Q3_K_M", "Q3_K - Large": "Q3_K_L", "Q4_K - Small": "Q4_K_S",
    "Q4_K - Medium": "Q4_K_M", "Q5_K - Small": "Q5_K_S", "Q5_K - Medium": "Q5_K_M", "Q6_K": "Q6_K",
    "TQ1_0 - 1.69 bpw ternary": "TQ1_0", "TQ2_0 - 2.06 bpw ternary": "TQ2_0", "IQ2_XXS - 2.0625 bpw": "IQ2_XXS",
    "IQ2_XS - 2.3125 bpw": "IQ2_XS", "IQ2_S - 2.5 bpw": "IQ2_S", "IQ2_M - 2.7 bpw": "IQ2_M",
    "IQ3_XS - 3.3 bpw": "IQ3_XS", "IQ3_XXS - 3.0625 bpw": "IQ3_XXS", "IQ1_S - 1.5625 bpw": "IQ1_S",
    "IQ1_M - 1.75 bpw": "IQ1_M", "IQ4_NL - 4.5 bpw": "IQ4_NL", "IQ4_XS - 4.25 bpw": "IQ4_XS",
    "IQ3_S - 3.4375 bpw": "IQ3_S", "IQ3_S mix - 3.66 bpw": "IQ3_M",
}  # fmt: skip
# The markdown table's column names → the field names of the other outputs.
MD_COLUMNS = {
    "model": "model_type", "size": "model_size", "params": "model_n_params", "backend": "backends",
    "ngl": "n_gpu_layers", "threads": "n_threads", "sm": "split_mode", "nkvo": "no_kv_offload", "fa": "flash_attn",
    "dev": "devices", "ts": "tensor_split", "ot": "tensor_buft_overrides", "embd": "embeddings",
    "nopo": "no_op_offload", "noh": "no_host", "lm": "load_mode", "fitt": "fit_target", "fitc": "fit_min_ctx",
}  # fmt: skip
MD_HEADER = re.compile(r"^\s*\|.*\|\s*t/s\s*\|\s*$", re.MULTILINE)
MD_TEST = re.compile(r"^(?:pp\s*(?P<pp>\d+))?\+?(?:tg\s*(?P<tg>\d+))?(?:\s*@\s*d(?P<depth>\d+))?$")
MD_RATE = re.compile(r"^(?P<mean>[\d.]+)\s*±\s*(?P<stdev>[\d.]+)$")
MD_AMOUNT = re.compile(r"^(?P<number>[\d.]+)\s*(?P<unit>GiB|MiB|B|M|K)?$")
MD_BUILD = re.compile(r"^build:\s*(?P<commit>\S+)\s*\((?P<number>\d+)\)", re.MULTILINE)
UNITS = {"GiB": 1024**3, "MiB": 1024**2, "B": 1e9, "M": 1e6, "K": 1e3, None: 1.0}
SETTINGS = (  # shown in the run's notes, in this order, when the row has them
    ("n_gpu_layers", "GPU layers"), ("n_threads", "threads"), ("n_batch", "batch"), ("n_ubatch", "micro-batch"),
    ("type_k", "K cache"), ("type_v", "V cache"), ("flash_attn", "flash attention"), ("split_mode", "split mode"),
    ("devices", "devices"),
)  # fmt: skip


def is_row(item: Any) -> bool:
    """An object of llama-bench's JSON / JSON Lines output."""
    return isinstance(item, dict) and "avg_ts" in item and ("model_type" in item or "n_prompt" in item)


def is_csv_header(names: list[str]) -> bool:
    return "avg_ts" in names and "model_type" in names


def is_markdown(text: str) -> bool:
    """A markdown table whose last column is t/s and which has a test column."""
    match = MD_HEADER.search(text)
    return match is not None and "test" in (c.strip() for c in match.group(0).split("|"))


# ---- model and hardware -------------------------------------------------------------------------
def model_and_quantization(model_type: str) -> tuple[str, str] | None:
    """("qwen2 7B", "Q4_K_M") from "qwen2 7B Q4_K - Medium"; None when it is not "<arch> <size> <type>"."""
    parts = model_type.split(None, 2)
    if len(parts) < 3:
        return None
    ftype = re.sub(r"^mostly\s+|\s*\(guessed\)$", "", parts[2].strip())  # older builds wrote "mostly Q4_0"
    ftype = re.sub(r"^\(guessed\)\s*", "", ftype)
    quantization = FTYPES.get(ftype) or ftype.split(" - ")[0].replace(" ", "_")
    return f"{parts[0]} {parts[1]}", quantization.upper()


def _hardware(r: _Reader) -> dict | None:
    """The machine from gpu_info (the GPUs llama-bench saw), or cpu_info when nothing was offloaded."""
    gpus = [g.strip() for g in r.text("gpu_info").split(",") if g.strip()]
    cpu = r.text("cpu_info")
    layers = r.get("n_gpu_layers")
    offloaded = str(layers).strip() not in ("0", "0.0") and r.text("backends").upper() not in ("CPU", "BLAS")
    if gpus and offloaded:
        same = len(set(gpus)) == 1
        name = (f"{len(gpus)}× {gpus[0]}" if len(gpus) > 1 else gpus[0]) if same else " + ".join(gpus)
        return {"name": name[:100], "accelerator": (gpus[0] if same else " + ".join(gpus))[:100],
                "accelerator_count": len(gpus), "cpu": cpu[:100]}  # fmt: skip
    if cpu:
        return {"name": cpu[:100], "cpu": cpu[:100]}
    return None


# ---- one test row -------------------------------------------------------------------------------
def _stats(mean: float | None, stdev: float | None, values: list[float], scale: float = 1.0) -> dict[str, float]:
    """The tool's mean and stdev, and count, min, median, max of the repetitions (numpy)."""
    stats = _present({"mean": mean, "stdev": stdev}, scale)
    if values:
        array = np.asarray(values, dtype=float) * scale
        stats.update(count=float(array.size), min=float(array.min()), p50=float(np.percentile(array, 50)),
                     max=float(array.max()))  # fmt: skip
    return stats


def _samples(r: _Reader, field_name: str) -> list[float]:
    value = r.get(field_name)
    return [] if value is None else r.gaps(field_name, value, 1.0)


def _started(r: _Reader) -> datetime | None:
    value = r.text("test_time")
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        r.error("test_time", f"{value!r} is not an ISO 8601 date and time.")
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _setting(key: str, value: Any) -> str:
    if key == "flash_attn":  # -1, 0, 1 in newer builds, a boolean in older ones
        return {"-1": "auto", "0": "off", "1": "on", "False": "off", "True": "on"}.get(str(value), str(value))
    return str(value)


def _notes(r: _Reader, test: str, repetitions_ts: list[float]) -> str:
    settings = [f"{label} {_setting(key, r.get(key))}" for key, label in SETTINGS if r.get(key) not in (None, "")]
    lines = [f"llama-bench {test}" + (f" of {r.text('model_filename')}" if r.text("model_filename") else "") + "."]
    if settings:
        lines.append(f"Settings: {', '.join(settings)}.")
    if repetitions_ts:
        lines.append(f"Repetitions (tokens/s): {', '.join(f'{v:.2f}' for v in repetitions_ts)}.")
    return "\n".join(lines)


def _run(r: _Reader) -> ParsedRun | None:
    """One test row as a run with the tool's figures."""
    model_type = r.text("model_type")
    named = model_and_quantization(model_type) if model_type else None
    if not model_type:
        r.error("model_type", "is missing: llama-bench names the model as '<architecture> <size> <type>'.")
    elif named is None:
        r.error("model_type", f"{model_type!r} is not '<architecture> <size> <type>' (e.g. 'llama 7B Q4_0').")
    n_prompt, n_gen, n_depth = r.whole("n_prompt"), r.whole("n_gen"), r.whole("n_depth")
    if r.get("avg_ts") is None:
        r.error("avg_ts", "is missing: the row has no tokens/s.")
    avg_ts = r.num("avg_ts")
    stdev_key = "stddev_ts" if r.get("stddev_ts") is not None else "stdev_ts"
    stdev_ts, avg_ns, stdev_ns = r.num(stdev_key), r.num("avg_ns"), r.num("stddev_ns")
    samples_ts, samples_ns = _samples(r, "samples_ts"), _samples(r, "samples_ns")
    raw_ts, raw_ns = r.get("samples_ts"), r.get("samples_ns")
    if isinstance(raw_ts, list) and isinstance(raw_ns, list) and len(raw_ts) != len(raw_ns):
        r.error("samples_ts", f"has {len(raw_ts)} entries; samples_ns has {len(raw_ns)}.")
    if n_prompt is not None and n_gen is not None and n_prompt + n_gen == 0:
        r.error("n_prompt", "and n_gen are both 0: the row tests nothing.")
    if named is None or avg_ts is None or n_prompt is None or n_gen is None or n_prompt + n_gen == 0:
        return None
    kind = "pp" if n_gen == 0 else "tg" if n_prompt == 0 else "pg"
    test = {"pp": f"pp{n_prompt}", "tg": f"tg{n_gen}", "pg": f"pp{n_prompt}+tg{n_gen}"}[kind]
    test += f" @ d{n_depth}" if n_depth else ""
    rates = _stats(avg_ts, stdev_ts, samples_ts)
    metrics = {{"pp": "prompt_tps", "tg": "output_tps", "pg": "total_tps"}[kind]: rates}
    if kind == "tg" and avg_ns is not None:  # a generated token's time, from the repetitions' times
        metrics["tpot_ms"] = _stats(avg_ns, stdev_ns, samples_ns, 1e-6 / n_gen)
    elif kind == "pg" and avg_ns is not None:  # a whole prompt and generation: one request's latency
        metrics["e2e_ms"] = _stats(avg_ns, stdev_ns, samples_ns, 1e-6)
    repetitions = len(samples_ts) or None
    model_name, quantization = named
    build = "" if r.get("build_number") is None else str(r.get("build_number")).strip()  # a number in JSON
    commit = r.text("build_commit")
    backends = r.text("backends") or r.text("backend")  # "backend" in older builds
    params_key = "model_n_params" if r.get("model_n_params") is not None else "n_params"
    return ParsedRun(
        source_format="llama_bench", row=r.row, tool="llama-bench",
        tool_version=(f"b{build} ({commit})" if build and commit else build or commit)[:50],
        model_name=model_name, quantization=quantization, provider=backends, name=f"{model_name} {quantization} {test}"[:200],
        concurrency=1, input_tokens_target=n_prompt + (n_depth or 0), output_tokens_target=n_gen,
        started_at=_started(r), duration_s=sum(samples_ns) / 1e9 if samples_ns else None,
        hardware=_hardware(r),
        deployment={"name": f"llama.cpp {backends or 'CPU'}" + (f" b{build}" if build else ""), "engine": "llama.cpp",
                    "engine_version": (f"b{build} ({commit})" if build else commit)[:50]},
        notes=_notes(r, test, samples_ts),
        reported=ReportedSummary(
            metrics=metrics, request_count=repetitions, error_count=0 if repetitions else None,
            output_token_throughput_tps=avg_ts if kind == "tg" else None,
            input_tokens_mean=float(n_prompt), output_tokens_mean=float(n_gen),
            extra=_present({"model_size_bytes": r.num("model_size"), "model_n_params": r.num(params_key)}),
        ),
    )  # fmt: skip


# ---- the four outputs ---------------------------------------------------------------------------
def _csv_rows(text: str, errors: ErrorList) -> list[tuple[int, dict]]:
    reader = csv.reader(io.StringIO(text))
    try:
        header = [name.strip() for name in next(reader)]
    except StopIteration:
        _reject(1, "header", "the file is empty.")
    except csv.Error as exc:
        _reject(1, "header", f"is not valid CSV ({exc}).")
    if not is_csv_header(header):
        _reject(1, "header", "a llama-bench CSV has the columns model_type and avg_ts.")
    rows, line = [], 1
    try:
        for cells in reader:
            line = reader.line_num
            if not any(c.strip() for c in cells):
                continue
            if len(cells) != len(header):
                errors.add(line, "row", f"has {len(cells)} cells; the header has {len(header)}.")
                continue
            rows.append((line, {name: cell.strip() or None for name, cell in zip(header, cells, strict=True)}))
    except csv.Error as exc:
        errors.add(line, "row", f"is not valid CSV ({exc}).")
    return rows


def _md_cell(errors: ErrorList, line: int, column: str, value: str) -> dict[str, Any]:
    """The fields of one markdown cell, converted to the units of the other outputs."""
    if column == "test":
        match = MD_TEST.match(value)
        if match is None or not (match["pp"] or match["tg"]):
            errors.add(line, column, f"{value!r} is not a llama-bench test (pp512, tg128, pp512+tg128, … @ d512).")
            return {}
        return {"n_prompt": int(match["pp"] or 0), "n_gen": int(match["tg"] or 0), "n_depth": int(match["depth"] or 0)}
    if column == "t/s":
        match = MD_RATE.match(value)
        if match is None:
            errors.add(line, column, f"{value!r} is not 'mean ± standard deviation' in tokens/s.")
            return {}
        return {"avg_ts": match["mean"], "stddev_ts": match["stdev"]}
    field_name = MD_COLUMNS.get(column, column)
    if column in ("size", "params"):
        match = MD_AMOUNT.match(value)
        if match is None:
            errors.add(line, column, f"{value!r} is not a size such as 3.56 GiB or 6.74 B.")
            return {}
        return {field_name: float(match["number"]) * UNITS[match["unit"]]}
    return {field_name: value or None}


def _md_rows(text: str, errors: ErrorList) -> tuple[list[tuple[int, dict]], dict]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if MD_HEADER.match(line))
    header = [c.strip() for c in lines[start].strip().strip("|").split("|")]
    rows = []
    for n, line in enumerate(lines[start + 1 :], start + 2):
        if not line.strip().startswith("|"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if all(set(c) <= set("-: ") for c in cells):  # the separator under the header
            continue
        if len(cells) != len(header):
            errors.add(n, "row", f"has {len(cells)} cells; the header has {len(header)}.")
            continue
        record: dict[str, Any] = {}
        known = len(errors.items) + errors.more
        for column, value in zip(header, cells, strict=True):
            record.update(_md_cell(errors, n, column, value))
        if len(errors.items) + errors.more == known:  # a bad cell is named once, not again as missing
            rows.append((n, record))
    build = MD_BUILD.search(text)
    return rows, ({"build_commit": build["commit"], "build_number": build["number"]} if build else {})


def _json_rows(text: str) -> list[tuple[str, Any]]:
    stripped = text.strip()
    if stripped.startswith("["):
        return [(f"test {n}", item) for n, item in enumerate(_json(stripped), 1)]
    if "\n" not in stripped:
        return [("line 1", _json(stripped))]
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            rows.append((f"line {n}", _json(line, n)))
    return rows


def parse_llama_bench(text: str) -> list[ParsedRun]:
    """Read llama-bench's JSON, JSON Lines, CSV or markdown output: one run per test row."""
    errors = ErrorList()
    stripped = text.strip()
    if not stripped:
        _reject("file", "file", "is empty.")
    defaults: dict = {}
    if stripped.startswith(("[", "{")):
        rows: list[tuple[int | str, Any]] = list(_json_rows(text))
    elif is_markdown(text):
        rows, defaults = _md_rows(text, errors)
    else:
        rows = _csv_rows(text, errors)
    runs = []
    for row, record in rows:
        if not isinstance(record, dict):
            errors.add(row, "test", "is not an object.")
            continue
        run = _run(_Reader(row, errors, {**defaults, **record}))
        if run is not None:
            runs.append(run)
    if not rows and not errors.items:
        errors.add("file", "rows", "holds no llama-bench test rows.")
    errors.raise_if_any(PerformanceFileError)
    return runs
