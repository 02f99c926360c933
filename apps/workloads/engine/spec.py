"""The workload spec ("llmbench.workload/1"): what a workload version stores, validated with paths in errors.

```json
{"format": "llmbench.workload/1", "source": "synthetic", "seed": 7,
 "input_tokens": {"dist": "lognormal", "average": 900, "median_ratio": 0.7, "max": 8000},
 "output_tokens": {"dist": "uniform", "min": 64, "max": 256},
 "length_basis": "content",
 "prefix": {"buckets": [{"weight": 3, "count": 4, "tokens": 1024}], "placement": "system"},
 "sessions": {"turns": {"dist": "uniform", "min": 2, "max": 6},
              "think_time_s": {"dist": "normal", "mean": 8, "stdev": 3, "min": 0},
              "mode": "concurrent", "users": null, "turn_gap_s": null},
 "request": {"endpoint": "chat", "pin_output": "ignore_eos", "stop": null, "response_format": null,
             "top_k": null, "min_p": null, "repetition_penalty": null}}
```

* `source`: `synthetic` (lengths drawn from `input_tokens` / `output_tokens`), `dataset` (prompts and conversations
  from an uploaded dataset, block `dataset`) or `trace` (an uploaded trace replayed on its own clock, block `trace`).
  Blocks that do not apply to the source are rejected, so a spec never carries settings that do nothing.
* Token distributions are those of `distributions.py`; `think_time_s` takes the same shapes in seconds (≥ 0).
* `sessions` makes every conversation multi-turn (synthetic) or keeps the dataset's turns (`dataset.multi_turn`).
  `mode`: `concurrent` (the sweep level is sessions in flight, or session arrivals per second in open loop) or
  `user_centric` (`users` simulated users, each sending its next turn `turn_gap_s` after its previous one).

`normalize(spec)` returns the spec with every default filled in: what a version stores and hashes.
"""

import hashlib
import math
from typing import Any

import orjson

from apps.workloads.engine.distributions import DISTRIBUTIONS, validate_distribution
from apps.workloads.engine.prefix import validate_buckets

FORMAT = "llmbench.workload/1"
SOURCES = ("synthetic", "dataset", "trace")
ENDPOINTS = ("chat", "completions")
PIN_OUTPUT = ("none", "ignore_eos", "min_tokens", "ignore_eos+min_tokens")
SESSION_MODES = ("concurrent", "user_centric")
OUTPUT_FROM = ("reference", "file", "distribution")
MAX_SEED = 2**32 - 1

TOP_KEYS = {
    "format",
    "source",
    "seed",
    "input_tokens",
    "output_tokens",
    "length_basis",
    "prefix",
    "sessions",
    "dataset",
    "trace",
    "request",
}
BLOCKS_BY_SOURCE = {
    # source: keys allowed besides format/source/seed/request/length_basis
    "synthetic": {"input_tokens", "output_tokens", "prefix", "sessions"},
    "dataset": {"output_tokens", "prefix", "sessions", "dataset"},
    "trace": {"trace"},
}
DEFAULTS: dict[str, dict[str, Any]] = {
    "prefix": {"placement": "system"},
    "sessions": {
        "mode": "concurrent",
        "users": None,
        "turn_gap_s": None,
        "think_time_s": {"dist": "fixed", "value": 0},
    },
    "dataset": {
        "sample": 1000,
        "min_input_tokens": 4,
        "max_input_tokens": 1024,
        "max_total_tokens": 2048,
        "min_output_tokens": 4,
        "output_from": "reference",
        "multi_turn": False,
        "max_turns": 8,
    },
    "trace": {"speedup": 1.0, "window_start_s": 0.0, "window_end_s": None, "block_size": 512},
    "request": {
        "endpoint": "chat",
        "pin_output": "ignore_eos",
        "stop": None,
        "response_format": None,
        "top_k": None,
        "min_p": None,
        "repetition_penalty": None,
    },
}
LIMITS = {"dataset.sample": 100_000, "dataset.max_turns": 100, "sessions.users": 10_000}


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _num(value: Any) -> bool:
    return (isinstance(value, float) and math.isfinite(value)) or _int(value)


def _unknown(block: dict, allowed: set[str], path: str, errors: list[str]) -> None:
    for key in sorted(set(block) - allowed):
        errors.append(f"{path}.{key}: unknown setting." if path else f"{key}: unknown setting.")


def validate_seconds(spec: Any, path: str) -> list[str]:
    """A distribution of seconds ≥ 0 (think time): the shapes of distributions.py with real values."""
    if not isinstance(spec, dict):
        return [f"{path}: must be an object with a 'dist' key."]
    dist = spec.get("dist")
    if dist not in ("fixed", "uniform", "normal", "lognormal"):
        return [f"{path}.dist: must be one of fixed, uniform, normal, lognormal."]
    required, optional = DISTRIBUTIONS[dist]
    errors = [f"{path}.{k}: unknown setting." for k in sorted(set(spec) - required - optional - {"dist"})]
    errors += [f"{path}.{k}: is required for {dist}." for k in sorted(required - set(spec))]
    for key in sorted((required | optional) & set(spec)):
        value = spec[key]
        if value is None and key in optional:
            continue
        if not _num(value) or value < 0:
            errors.append(f"{path}.{key}: must be a number ≥ 0.")
    if not errors and dist == "uniform" and spec["min"] > spec["max"]:
        errors.append(f"{path}: min is above max.")
    if not errors and dist == "lognormal":
        if not ({"mean", "sigma"} <= set(spec) or {"average", "median_ratio"} <= set(spec)):
            errors.append(f"{path}: lognormal needs mean and sigma, or average and median_ratio.")
        elif "median_ratio" in spec and not 0 < spec["median_ratio"] <= 1:
            errors.append(f"{path}.median_ratio: must be in (0, 1].")
    return errors


def _check_count(block: dict, key: str, path: str, errors: list[str], *, minimum: int = 1, nullable: bool = False):
    value = block.get(key)
    if value is None and nullable:
        return
    limit = LIMITS.get(f"{path}.{key}")
    if not _int(value) or value < minimum:
        errors.append(f"{path}.{key}: must be an integer ≥ {minimum}.")
    elif limit is not None and value > limit:
        errors.append(f"{path}.{key}: must be at most {limit:,}.")


def _validate_request(block: Any, errors: list[str]) -> None:
    if not isinstance(block, dict):
        errors.append("request: must be an object.")
        return
    _unknown(block, set(DEFAULTS["request"]), "request", errors)
    if block.get("endpoint", "chat") not in ENDPOINTS:
        errors.append("request.endpoint: must be chat or completions.")
    if block.get("pin_output", "ignore_eos") not in PIN_OUTPUT:
        errors.append(f"request.pin_output: must be one of {', '.join(PIN_OUTPUT)}.")
    stop = block.get("stop")
    if stop is not None and (
        not isinstance(stop, list) or not 1 <= len(stop) <= 4 or not all(isinstance(s, str) and s for s in stop)
    ):
        errors.append("request.stop: must be a list of 1 to 4 non-empty strings.")
    fmt = block.get("response_format")
    if fmt is not None:
        if not isinstance(fmt, dict) or fmt.get("type") not in ("json_object", "json_schema"):
            errors.append("request.response_format.type: must be json_object or json_schema.")
        elif fmt["type"] == "json_schema" and not isinstance(fmt.get("json_schema"), dict):
            errors.append("request.response_format.json_schema: must be an object (name, schema).")
    _check_count(block, "top_k", "request", errors, minimum=-1, nullable=True)
    for key, low, high in (("min_p", 0.0, 1.0), ("repetition_penalty", 0.0, 10.0)):
        value = block.get(key)
        if value is not None and (
            not _num(value) or not low <= value <= high or (key == "repetition_penalty" and value == 0)
        ):
            errors.append(
                f"request.{key}: must be a number in {'(' if key == 'repetition_penalty' else '['}{low}, {high}]."
            )


def _validate_sessions(block: Any, errors: list[str]) -> None:
    if not isinstance(block, dict):
        errors.append("sessions: must be an object.")
        return
    _unknown(block, {"turns", "think_time_s", "mode", "users", "turn_gap_s"}, "sessions", errors)
    if "turns" in block:
        errors += validate_distribution(block["turns"], "sessions.turns")
    if "think_time_s" in block:
        errors += validate_seconds(block["think_time_s"], "sessions.think_time_s")
    mode = block.get("mode", "concurrent")
    if mode not in SESSION_MODES:
        errors.append("sessions.mode: must be concurrent or user_centric.")
    elif mode == "user_centric":
        _check_count(block, "users", "sessions", errors)
        gap = block.get("turn_gap_s")
        if not _num(gap) or gap <= 0:
            errors.append("sessions.turn_gap_s: must be a number of seconds > 0 in user-centric mode.")
    else:
        for key in ("users", "turn_gap_s"):
            if block.get(key) is not None:
                errors.append(f"sessions.{key}: only applies to user_centric mode.")


def _validate_dataset(block: Any, errors: list[str]) -> None:
    if not isinstance(block, dict):
        errors.append("dataset: must be an object.")
        return
    _unknown(block, set(DEFAULTS["dataset"]), "dataset", errors)
    merged = DEFAULTS["dataset"] | block
    _check_count(merged, "sample", "dataset", errors)
    for key in ("min_input_tokens", "max_input_tokens", "max_total_tokens", "min_output_tokens"):
        _check_count(merged, key, "dataset", errors, nullable=True)
    _check_count(merged, "max_turns", "dataset", errors)
    if merged["output_from"] not in OUTPUT_FROM:
        errors.append(f"dataset.output_from: must be one of {', '.join(OUTPUT_FROM)}.")
    if not isinstance(merged["multi_turn"], bool):
        errors.append("dataset.multi_turn: must be true or false.")
    lo, hi = merged["min_input_tokens"], merged["max_input_tokens"]
    if _int(lo) and _int(hi) and lo > hi:
        errors.append("dataset.min_input_tokens: is above max_input_tokens.")


def _validate_trace(block: Any, errors: list[str]) -> None:
    if not isinstance(block, dict):
        errors.append("trace: must be an object.")
        return
    _unknown(block, set(DEFAULTS["trace"]), "trace", errors)
    merged = DEFAULTS["trace"] | block
    if not _num(merged["speedup"]) or not 0.01 <= merged["speedup"] <= 1000:
        errors.append("trace.speedup: must be a number from 0.01 to 1000.")
    start, end = merged["window_start_s"], merged["window_end_s"]
    if not _num(start) or start < 0:
        errors.append("trace.window_start_s: must be a number of seconds ≥ 0.")
    elif end is not None and (not _num(end) or end <= start):
        errors.append("trace.window_end_s: must be a number of seconds after window_start_s.")
    _check_count(merged, "block_size", "trace", errors)


def validate_spec(spec: Any) -> list[str]:
    """Every problem of `spec`, each starting with its path ("input_tokens.max: …"); [] when valid."""
    if not isinstance(spec, dict):
        return ["(spec): must be a JSON object."]
    errors: list[str] = []
    _unknown(spec, TOP_KEYS, "", errors)
    if spec.get("format", FORMAT) != FORMAT:
        errors.append(f"format: must be {FORMAT!r}.")
    source = spec.get("source")
    if source not in SOURCES:
        return [*errors, "source: must be synthetic, dataset or trace."]
    allowed = BLOCKS_BY_SOURCE[source]
    for key in sorted((TOP_KEYS - {"format", "source", "seed", "request", "length_basis"} - allowed) & set(spec)):
        errors.append(f"{key}: does not apply to a {source} workload.")
    seed = spec.get("seed", 0)
    if not _int(seed) or not 0 <= seed <= MAX_SEED:
        errors.append(f"seed: must be an integer from 0 to {MAX_SEED}.")
    if spec.get("length_basis", "content") != "content":
        # "server" (subtracting the chat template's tokens, measured by a probe) is not built yet.
        errors.append(
            "length_basis: only 'content' is supported (lengths count the prompt text; a chat "
            "server adds its template's tokens on top)."
        )
    if source == "synthetic":
        for key in ("input_tokens", "output_tokens"):
            if key not in spec:
                errors.append(f"{key}: is required for a synthetic workload.")
            else:
                errors += validate_distribution(spec[key], key)
    elif "output_tokens" in spec:
        errors += validate_distribution(spec["output_tokens"], "output_tokens")
    if "prefix" in spec:
        prefix = spec["prefix"]
        if not isinstance(prefix, dict):
            errors.append("prefix: must be an object.")
        else:
            _unknown(prefix, {"buckets", "placement"}, "prefix", errors)
            errors += validate_buckets(prefix.get("buckets"), "prefix.buckets")
            if prefix.get("placement", "system") not in ("system", "user"):
                errors.append("prefix.placement: must be system or user.")
    if "sessions" in spec:
        _validate_sessions(spec["sessions"], errors)
        if source == "synthetic" and isinstance(spec["sessions"], dict) and "turns" not in spec["sessions"]:
            errors.append("sessions.turns: is required for synthetic sessions.")
    if source == "dataset":
        _validate_dataset(spec.get("dataset", {}), errors)
        ds = spec.get("dataset") if isinstance(spec.get("dataset"), dict) else {}
        if ds.get("output_from") == "distribution" and "output_tokens" not in spec:
            errors.append("output_tokens: is required when dataset.output_from is distribution.")
    if source == "trace":
        _validate_trace(spec.get("trace", {}), errors)
    if "request" in spec:
        _validate_request(spec["request"], errors)
    return errors


def normalize(spec: dict) -> dict:
    """A valid spec with every default filled in (what a version stores and what its hash covers)."""
    out = {"format": FORMAT, "source": spec["source"], "seed": spec.get("seed", 0)}
    out["length_basis"] = spec.get("length_basis", "content")
    for key in ("input_tokens", "output_tokens"):
        if key in spec:
            out[key] = spec[key]
    for key in ("prefix", "sessions", "dataset", "trace"):
        if key in spec or (key == spec["source"]):
            out[key] = DEFAULTS[key] | spec.get(key, {})
    out["request"] = DEFAULTS["request"] | spec.get("request", {})
    return out


def spec_sha256(spec: dict) -> str:
    """Hash of a normalized spec with sorted keys: equal specs, equal hashes."""
    return hashlib.sha256(orjson.dumps(spec, option=orjson.OPT_SORT_KEYS)).hexdigest()


def is_multi_turn(spec: dict) -> bool:
    if spec["source"] == "dataset":
        return bool(spec.get("dataset", {}).get("multi_turn"))
    if spec["source"] == "trace":
        return False  # trace sessions are decided by the file (session ids), see plan.py
    return "sessions" in spec
