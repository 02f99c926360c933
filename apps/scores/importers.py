"""Parsers for score files: long CSV, wide CSV and lm-evaluation-harness results JSON.

They only read and never touch the database (services.py writes). `read_*` returns every score it
could read together with every bad row and field, so the caller can add its own checks (the range
of each score, known only once the scale is settled) and report everything in one pass;
`parse_*` raises ScoreFileError listing them all instead.
"""

import csv
import io
import json
import math
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from apps.scores.models import normalize_quantization
from llmbench.parsers import json_loads
from llmbench.uploads import ErrorList, FileRejected, RowError
from llmbench.uploads import decode_upload as _decode

LONG_REQUIRED = ("model", "quantization", "benchmark", "score")
LONG_OPTIONAL = ("n_shot", "stderr", "source", "evaluated_at", "family", "parameters_b")
WIDE_RESERVED = ("model", "quantization", "family", "parameters_b", "source", "evaluated_at")

# lm-evaluation-harness task names → the names people know (anything else keeps the task name).
LM_EVAL_TASK_NAMES = {
    "mmlu": "MMLU",
    "mmlu_pro": "MMLU-Pro",
    "gsm8k": "GSM8K",
    "gsm8k_cot": "GSM8K (CoT)",
    "hellaswag": "HellaSwag",
    "arc_challenge": "ARC-Challenge",
    "arc_easy": "ARC-Easy",
    "truthfulqa_mc2": "TruthfulQA",
    "truthfulqa_mc1": "TruthfulQA (MC1)",
    "winogrande": "Winogrande",
    "ifeval": "IFEval",
    "gpqa_main_zeroshot": "GPQA",
    "bbh": "BBH",
    "humaneval": "HumanEval",
}
# The metric taken from a task's results, first one present wins.
LM_EVAL_METRICS = (
    "acc,none",
    "exact_match,strict-match",
    "exact_match,flexible-extract",
    "exact_match,none",
    "prompt_level_strict_acc,none",
    "acc_norm,none",
    "pass@1,create_test",
    "pass_at_1,none",
)


class ScoreFileError(FileRejected):
    """A score file that cannot be imported."""


@dataclass
class ParsedScore:
    """One score as read from a file, before scale conversion."""

    row: int | str
    model_name: str
    quantization: str
    benchmark: str
    value: float
    field: str = "score"  # the column the value came from, for error messages
    stderr: float | None = None
    n_shot: int | None = None
    source: str = ""
    evaluated_at: date | None = None
    family: str = ""
    parameters_b: float | None = None


@dataclass
class ScoreErrors(ErrorList):
    """Every problem of a score file; raised as one ScoreFileError in the file's order. `task_order`
    gives the position of each lm-eval task in its file (CSV rows are ordered by line number)."""

    task_order: dict[str, int] = field(default_factory=dict)

    def raise_if_any(self) -> None:
        if self.items:
            raise ScoreFileError(self._in_file_order(), self.more)

    def _in_file_order(self) -> list[RowError]:
        """Problems of the whole file or upload first, then by line or task; a row's own in the order found."""

        def key(error: RowError) -> tuple[int, int]:
            if isinstance(error.row, int):
                return (1, error.row)
            if error.row in self.task_order:
                return (1, self.task_order[error.row])
            return (0, 0)

        return sorted(self.items, key=key)  # stable


def decode_upload(content: bytes) -> str:
    """Text of an uploaded score file: UTF-8, with or without a byte-order mark."""
    return _decode(content, ScoreFileError)


def _finite(raw: str, *, row, field_name: str, errors: ScoreErrors, required: bool) -> float | None:
    text = raw.strip()
    if not text:
        if required:
            errors.add(row, field_name, "is empty.")
        return None
    try:
        value = float(text)
    except ValueError:
        errors.add(row, field_name, f"{text!r} is not a number.")
        return None
    if not math.isfinite(value):
        errors.add(row, field_name, f"{text!r} is not a finite number.")
        return None
    return value


def _optional_int(raw: str, *, row, field_name: str, errors: ScoreErrors) -> int | None:
    text = raw.strip()
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        errors.add(row, field_name, f"{text!r} is not a whole number.")
        return None
    if value < 0:
        errors.add(row, field_name, f"{value} is negative.")
        return None
    return value


def _optional_date(raw: str, *, row, field_name: str, errors: ScoreErrors) -> date | None:
    text = raw.strip()
    if not text:
        return None
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        errors.add(row, field_name, f"{text!r} is not a date (YYYY-MM-DD).")
        return None


def _header(raw_header: list[str], column_map: dict[str, str], errors: ScoreErrors) -> list[str]:
    lowered_map = {k.strip().lower(): v.strip() for k, v in column_map.items()}
    header = []
    for raw in raw_header:
        name = raw.strip()
        mapped = lowered_map.get(name.lower())
        if mapped is not None:
            name = mapped
        # Our own column names are case-insensitive; benchmark columns keep their spelling.
        if name.lower() in LONG_REQUIRED + LONG_OPTIONAL:
            name = name.lower()
        header.append(name)
    seen: set[str] = set()
    for name in header:
        if not name:
            errors.add(1, "header", "has an empty column name.")
        elif name.lower() in seen:
            errors.add(1, name, "appears twice in the header.")
        seen.add(name.lower())
    return header


def parse_scores_csv(text: str, *, column_map: dict[str, str] | None = None) -> tuple[str, list[ParsedScore]]:
    """Read a long or wide scores CSV; returns ("long" | "wide", rows) or raises listing every bad cell."""
    layout, rows, errors = read_scores_csv(text, column_map=column_map)
    errors.raise_if_any()
    return layout, rows


def read_scores_csv(
    text: str, *, column_map: dict[str, str] | None = None
) -> tuple[str, list[ParsedScore], ScoreErrors]:
    """Read a long or wide scores CSV: ("long" | "wide", every score with a number, every problem found).

    A row with a problem still gives its readable scores (so their range can be checked too); such
    rows must never be written, which the caller ensures by refusing the file when `errors` is not
    empty. Only a header that cannot be read raises at once."""
    errors = ScoreErrors()
    reader = csv.reader(io.StringIO(text))
    try:
        raw_header = next(reader)
    except StopIteration:
        raise ScoreFileError([RowError(1, "header", "the file is empty.")]) from None
    except csv.Error as exc:
        raise ScoreFileError([RowError(1, "header", f"is not valid CSV ({exc}).")]) from None
    header = _header(raw_header, column_map or {}, errors)
    # Rows can still be read past an unknown or unnamed column, not past a missing or doubled one.
    header_readable = not errors.items
    is_long = "benchmark" in header and "score" in header
    required = LONG_REQUIRED if is_long else ("model", "quantization")
    for name in required:
        if name not in header:
            errors.add(1, name, "required column is missing.")
            header_readable = False
    if is_long:
        for name in header:
            if name and name not in LONG_REQUIRED + LONG_OPTIONAL:
                expected = ", ".join(LONG_REQUIRED + LONG_OPTIONAL)
                errors.add(1, name, f"unknown column; a long file has only: {expected}.")
    benchmark_columns = [] if is_long else [n for n in header if n and n.lower() not in WIDE_RESERVED]
    if not is_long and not benchmark_columns and "model" in header:
        errors.add(1, "header", "no benchmark columns: a wide file has one column per benchmark.")
        header_readable = False
    if not header_readable:
        errors.raise_if_any()

    rows: list[ParsedScore] = []
    seen: dict[tuple[str, str, str], int] = {}
    line = 1
    try:
        for cells in reader:
            line = reader.line_num
            if not any(c.strip() for c in cells):
                continue
            if len(cells) != len(header):
                errors.add(line, "row", f"has {len(cells)} cells; the header has {len(header)}.")
                continue
            record = dict(zip(header, cells, strict=True))
            model_name = record["model"].strip()
            quantization = normalize_quantization(record["quantization"])
            if not model_name:
                errors.add(line, "model", "is empty.")
            if not quantization:
                errors.add(line, "quantization", "is empty.")
            common = {
                "source": record.get("source", "").strip(),
                "evaluated_at": _optional_date(
                    record.get("evaluated_at", ""), row=line, field_name="evaluated_at", errors=errors
                ),
                "family": record.get("family", "").strip(),
                "parameters_b": _finite(
                    record.get("parameters_b", ""), row=line, field_name="parameters_b", errors=errors, required=False
                ),
            }
            if is_long:
                cells_to_read = [(record["benchmark"].strip(), "score", record["score"], True)]
                if not cells_to_read[0][0]:
                    errors.add(line, "benchmark", "is empty.")
                # Read on every row, so a bad stderr is reported next to a bad score, not after it is fixed.
                common["n_shot"] = _optional_int(record.get("n_shot", ""), row=line, field_name="n_shot", errors=errors)
                common["stderr"] = _finite(
                    record.get("stderr", ""), row=line, field_name="stderr", errors=errors, required=False
                )
            else:
                cells_to_read = [(name, name, record[name], False) for name in benchmark_columns]
            keyed = bool(model_name and quantization)
            for benchmark, field_name, raw, required in cells_to_read:
                value = _finite(raw, row=line, field_name=field_name, errors=errors, required=required)
                if value is None:
                    continue
                if keyed and benchmark:
                    key = (model_name, quantization, benchmark.lower())
                    if key in seen:
                        errors.add(
                            line, field_name, f"repeats {model_name} {quantization} {benchmark} of row {seen[key]}."
                        )
                        continue
                    seen[key] = line
                rows.append(
                    ParsedScore(
                        row=line,
                        model_name=model_name,
                        quantization=quantization,
                        benchmark=benchmark,
                        value=value,
                        field=field_name,
                        **common,
                    )
                )
    except csv.Error as exc:
        errors.add(line, "row", f"is not valid CSV ({exc}).")
    if not rows and not errors.items:
        errors.add("file", "rows", "no scores found below the header.")
    return ("long" if is_long else "wide"), rows, errors


def _model_from_lm_eval(doc: dict) -> str:
    if isinstance(doc.get("model_name"), str) and doc["model_name"].strip():
        return doc["model_name"].strip()
    model_args = (doc.get("config") or {}).get("model_args")
    if isinstance(model_args, str):
        for part in model_args.split(","):
            key, _, value = part.partition("=")
            if key.strip() in ("pretrained", "model") and value.strip():
                return value.strip()
    if isinstance(model_args, dict):
        for key in ("pretrained", "model"):
            if isinstance(model_args.get(key), str):
                return model_args[key]
    return ""


def _lm_eval_stderr(task_results: dict, metric_key: str) -> float | None:
    metric, _, filter_name = metric_key.partition(",")
    raw = task_results.get(f"{metric}_stderr,{filter_name}")
    if isinstance(raw, (int, float)) and not isinstance(raw, bool) and math.isfinite(raw):
        return float(raw)
    return None  # lm-eval writes "N/A" when it has none


def parse_lm_eval_json(text: str, *, model_name: str = "", quantization: str = "") -> list[ParsedScore]:
    """Read an lm-evaluation-harness results file (its `results` block), one score per top-level task;
    raises listing every bad task and field."""
    rows, errors = read_lm_eval_json(text, model_name=model_name, quantization=quantization)
    errors.raise_if_any()
    return rows


def read_lm_eval_json(
    text: str, *, model_name: str = "", quantization: str = ""
) -> tuple[list[ParsedScore], ScoreErrors]:
    """Read an lm-evaluation-harness results file: (every score with a number, every problem found).
    Only a file that is not a results object raises at once."""
    errors = ScoreErrors()
    try:
        doc = json_loads(text)
    except json.JSONDecodeError as exc:
        raise ScoreFileError([RowError(f"line {exc.lineno}", "file", f"is not valid JSON ({exc.msg}).")]) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("results"), dict):
        raise ScoreFileError([RowError("file", "results", "an lm-evaluation-harness results object is required.")])
    model_name = (model_name or _model_from_lm_eval(doc)).strip()
    quantization = normalize_quantization(quantization or "")
    if not model_name:
        errors.add("upload", "model", "is empty: the file names no model, give one with the upload.")
    if not quantization:
        errors.add("upload", "quantization", "is empty: give the quantization with the upload (e.g. BF16, AWQ).")
    results: dict = doc["results"]
    groups = doc.get("group_subtasks") or {}
    subtasks = {
        sub
        for group, subs in groups.items()
        if group in results and isinstance(subs, list)
        for sub in subs
        if sub != group
    }
    n_shots = doc.get("n-shot") or {}
    evaluated_at = None
    if isinstance(doc.get("date"), (int, float)):
        evaluated_at = datetime.fromtimestamp(doc["date"], tz=UTC).date()

    rows: list[ParsedScore] = []
    errors.task_order = {task: index for index, task in enumerate(results)}
    for task, task_results in results.items():
        if task in subtasks:
            continue
        if not isinstance(task_results, dict):
            errors.add(task, "results", "is not an object of metrics.")
            continue
        metric_key = next((m for m in LM_EVAL_METRICS if m in task_results), None)
        if metric_key is None:
            metric_key = next(
                (
                    k
                    for k, v in task_results.items()
                    if "," in k and "_stderr" not in k and isinstance(v, (int, float)) and not isinstance(v, bool)
                ),
                None,
            )
        if metric_key is None:
            errors.add(task, "metric", "has no metric of the form 'name,filter' (e.g. 'acc,none').")
            continue
        value = task_results[metric_key]
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            errors.add(task, metric_key, f"{value!r} is not a finite number.")
            continue
        n_shot = n_shots.get(task)
        rows.append(
            ParsedScore(
                row=task,
                model_name=model_name,
                quantization=quantization,
                benchmark=LM_EVAL_TASK_NAMES.get(task, task),
                value=float(value),
                field=metric_key,
                stderr=_lm_eval_stderr(task_results, metric_key),
                n_shot=n_shot if isinstance(n_shot, int) and n_shot >= 0 else None,
                source=f"lm-evaluation-harness {metric_key}",
                evaluated_at=evaluated_at,
            )
        )
    if not rows and not errors.items:
        errors.add("file", "results", "holds no task results.")
    return rows, errors
