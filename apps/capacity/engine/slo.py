"""A capacity search's service-level objective: what each request must meet, and how sure the judge must be.

    {"objectives": [{"metric": "ttft_ms", "percentile": 95, "max_ms": 500}, ...],
     "max_error_rate": 0.01, "attainment": 0.95 | None, "confidence": 0.95}

"p95 TTFT ≤ 500 ms" is read as "at least 95% of the successful requests have a TTFT of at most 500 ms", a
share the judge can put a confidence interval on (engine.judge). `attainment`, when set, is the share of all
requests (failed ones count as missing it) that must meet every latency threshold at once: goodput's rule.
"""

from typing import Any

METRICS = {
    "ttft_ms": ("TTFT", "time to first token"),
    "tpot_ms": ("TPOT", "time per output token"),
    "itl_ms": ("ITL", "inter-token latency"),
    "e2e_ms": ("E2E", "end-to-end latency"),
}
PERCENTILES = (50, 90, 95, 99)
CONFIDENCES = (0.8, 0.9, 0.95, 0.99)
DEFAULT_MAX_ERROR_RATE = 0.01


class SloInvalid(ValueError):
    """The SLO cannot be used; `errors` maps each offending path (e.g. "objectives[1].max_ms") to why."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{path}: {message}" for path, message in errors.items()))
        self.errors = errors


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def validate_slo(value: Any) -> dict:
    """The SLO in its normal form, or SloInvalid naming every problem."""
    errors: dict[str, str] = {}
    if not isinstance(value, dict):
        raise SloInvalid({"slo": "must be an object with objectives, max_error_rate, attainment, confidence"})
    unknown = sorted(set(value) - {"objectives", "max_error_rate", "attainment", "confidence"})
    if unknown:
        errors["slo"] = f"unknown setting(s): {', '.join(unknown)}"
    objectives = value.get("objectives", [])
    normal: list[dict] = []
    if not isinstance(objectives, list):
        errors["objectives"] = "must be a list"
        objectives = []
    seen = set()
    for i, objective in enumerate(objectives):
        path = f"objectives[{i}]"
        if not isinstance(objective, dict):
            errors[path] = "must be an object with metric, percentile and max_ms"
            continue
        metric, percentile, max_ms = objective.get("metric"), objective.get("percentile"), objective.get("max_ms")
        if metric not in METRICS:
            errors[f"{path}.metric"] = f"must be one of {', '.join(METRICS)}"
        if percentile not in PERCENTILES or isinstance(percentile, bool):
            errors[f"{path}.percentile"] = f"must be one of {', '.join(map(str, PERCENTILES))}"
        limit = _number(max_ms)
        if limit is None or not 0 < limit <= 3_600_000:
            errors[f"{path}.max_ms"] = "must be a number of milliseconds above 0"
        if (metric, percentile) in seen:
            errors[path] = "the same metric and percentile twice"
        seen.add((metric, percentile))
        normal.append({"metric": metric, "percentile": percentile, "max_ms": limit})
    max_error_rate = value.get("max_error_rate", DEFAULT_MAX_ERROR_RATE)
    rate = _number(max_error_rate)
    if rate is None or not 0 <= rate < 1:
        errors["max_error_rate"] = "must be a share from 0 up to (not including) 1, e.g. 0.01 for 1%"
    attainment = value.get("attainment")
    share = None if attainment is None else _number(attainment)
    if attainment is not None and (share is None or not 0 < share < 1):
        errors["attainment"] = "must be a share between 0 and 1, e.g. 0.95, or null"
    if attainment is not None and not objectives:
        errors["attainment"] = "needs at least one latency objective to attain"
    confidence = value.get("confidence", 0.95)
    if confidence not in CONFIDENCES:
        errors["confidence"] = f"must be one of {', '.join(map(str, CONFIDENCES))}"
    if not objectives and rate is not None and attainment is None and not errors:
        errors["objectives"] = "give at least one latency objective (e.g. p95 TTFT ≤ 500 ms)"
    if errors:
        raise SloInvalid(errors)
    return {"objectives": normal, "max_error_rate": rate, "attainment": share, "confidence": float(confidence)}


def objective_key(objective: dict) -> str:
    return f"p{objective['percentile']}_{objective['metric']}"


def objective_label(objective: dict) -> str:
    short, _ = METRICS[objective["metric"]]
    return f"p{objective['percentile']} {short} ≤ {objective['max_ms']:g} ms"


def describe_slo(slo: dict) -> str:
    """In words, e.g. "p95 TTFT ≤ 500 ms, p95 TPOT ≤ 50 ms, errors ≤ 1%"."""
    parts = [objective_label(o) for o in slo.get("objectives", [])]
    if slo.get("attainment") is not None:
        parts.append(f"{slo['attainment']:.0%} of requests meet all of them")
    if slo.get("max_error_rate") is not None:
        parts.append(f"errors ≤ {slo['max_error_rate']:.1%}".replace(".0%", "%"))
    return ", ".join(parts)
