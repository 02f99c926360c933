"""Reads of a parameter sweep's results that pages, the API, the live stream and the runner share.

Every quality figure is on a 0–100 scale: the text-quality metrics as they are stored, the
evaluator's 0–1 score × 100, and pass/fail as 100/0 (so its mean is the pass rate in percent).
Failed requests have no quality and no latency: they are counted, never averaged in. An
undecided evaluation has no score and no pass, so it leaves those figures too.
"""

import math
from dataclasses import asdict, dataclass, is_dataclass

import numpy as np
from django.db.models import Case, Count, F, FloatField, Max, Q, QuerySet, Sum, When
from django.db.models.functions import Left

from apps.batches import analysis
from apps.batches.models import Batch, LoadSweep
from apps.batches.parameters import PARAMETERS, Values, combination
from apps.batches.trials import level_trials
from apps.experiments.models import Response

TEXT_METRICS = (
    "overall", "coherence", "completeness", "readability", "length_appropriateness", "creativity", "specificity",
)  # fmt: skip
QUALITY_METRICS = (*TEXT_METRICS, "score", "pass_rate")
COST_METRICS = ("latency_ms", "ttft_ms", "cost_usd", "output_tokens")
METRIC_LABELS = {
    **{m: m.replace("_", " ").capitalize() for m in TEXT_METRICS},
    "overall": "Overall quality",
    "score": "Evaluator score",
    "pass_rate": "Pass rate",
    "latency_ms": "Latency (ms)",
    "ttft_ms": "TTFT (ms)",
    "cost_usd": "Cost (USD)",
    "output_tokens": "Output tokens",
}


def metric_expression(metric: str):
    """The per-response value of a quality metric as a database expression (NULL when absent)."""
    if metric in TEXT_METRICS:
        return F(f"quality_{metric}")
    if metric == "score":
        return F("score") * 100.0
    if metric == "pass_rate":
        return Case(When(passed=True, then=100.0), When(passed=False, then=0.0), output_field=FloatField())
    raise ValueError(f"unknown quality metric {metric!r}")


def results(batch: Batch) -> QuerySet:
    return Response.objects.filter(experiment_id=batch.pk)


@dataclass
class CombinationFigures:
    """One combination's results: counts and the mean of the chosen metric, latency and cost."""

    index: int
    parameters: dict
    results: int
    errors: int
    n: int
    mean: float | None
    mean_latency_ms: float | None
    cost_usd: float


def combination_aggregates(batch: Batch, metric: str, *, through_id: int | None = None, target_id: int | None = None):
    """Per combination: results, errors, n and sum of `metric`, latency sum and count, cost sum."""
    rows = results(batch)
    if through_id is not None:
        rows = rows.filter(id__lte=through_id)
    if target_id is not None:
        rows = rows.filter(target_id=target_id)
    expression = metric_expression(metric)
    ok = Q(error_code="")
    return (
        rows.order_by()
        .values("combination")
        .annotate(
            results=Count("id"),
            errors=Count("id", filter=~ok),
            n=Count(expression, filter=ok),
            total=Sum(expression, filter=ok),
            latency_n=Count("latency_ms", filter=ok),
            latency_total=Sum("latency_ms", filter=ok),
            cost_total=Sum("cost_usd"),
        )
    )


def combination_figures(batch: Batch, metric: str) -> list[CombinationFigures]:
    """Every combination with results, in combination order."""
    values = batch.parameter_values
    figures = []
    for row in sorted(combination_aggregates(batch, metric), key=lambda r: r["combination"]):
        figures.append(
            CombinationFigures(
                index=row["combination"],
                parameters=combination(values, row["combination"]),
                results=row["results"],
                errors=row["errors"],
                n=row["n"],
                mean=row["total"] / row["n"] if row["n"] else None,
                mean_latency_ms=row["latency_total"] / row["latency_n"] if row["latency_n"] else None,
                cost_usd=float(row["cost_total"] or 0.0),
            )
        )
    return figures


def swept_parameters(values: Values) -> list[str]:
    """Parameters with more than one value, in sweep order."""
    return [name for name, options in values.items() if len(options) > 1]


def default_axes(values: Values) -> tuple[str, str | None]:
    """temperature × top_p when both are swept, else the first two swept parameters."""
    swept = swept_parameters(values) or list(values)
    if "temperature" in swept and "top_p" in swept:
        return "temperature", "top_p"
    return swept[0], swept[1] if len(swept) > 1 else None


def heatmap(batch: Batch, *, x: str, y: str | None, metric: str, target_id: int | None = None) -> dict:
    """Mean `metric` per (x value, y value) cell over the results stored so far, weighted by
    each combination's count; `through_id` is the last response included, so a live page adds
    only later ones."""
    values = batch.parameter_values
    for axis in (x, y):
        if axis is not None and axis not in values:
            raise ValueError(f"{axis!r} is not a parameter of this batch (one of: {', '.join(values)})")
    through_id = results(batch).aggregate(last=Max("id"))["last"] or 0
    sums: dict[tuple[int, int], list[float]] = {}
    for row in combination_aggregates(batch, metric, through_id=through_id, target_id=target_id):
        if not row["n"]:
            continue
        params = combination(values, row["combination"])
        key = (values[x].index(params[x]), values[y].index(params[y]) if y else 0)
        cell = sums.setdefault(key, [0.0, 0])
        cell[0] += row["total"]
        cell[1] += row["n"]
    return {
        "x": x, "y": y, "metric": metric, "target": target_id,
        "x_values": values[x], "y_values": values[y] if y else [""],
        "cells": [[xi, yi, round(total / n, 4), n] for (xi, yi), (total, n) in sorted(sums.items())],
        "through_id": through_id,
    }  # fmt: skip


def objective_summary(batch: Batch) -> dict:
    """Mean of the batch's objective over all its successful results, and how many."""
    figures = (
        results(batch)
        .filter(error_code="")
        .aggregate(n=Count(metric_expression(batch.objective)), total=Sum(metric_expression(batch.objective)))
    )
    return {"n": figures["n"], "mean": figures["total"] / figures["n"] if figures["n"] else None}


def result_rows(batch: Batch, *, after_id: int = 0, limit: int = 500) -> list[dict]:
    """Results after `after_id` as the live page takes them: parameters, every quality figure,
    latency and cost, and the first 300 characters of the text (shown escaped)."""
    rows = (
        results(batch).filter(id__gt=after_id).order_by("id")
        .values("id", "combination", "target_id", "item_key", "repetition", "parameters", "quality", "score",
                "passed", "error_code", "latency_ms", "cost_usd", "created_at")
        .annotate(excerpt=Left("content", 300))[:limit]
    )  # fmt: skip
    out = []
    for row in rows:
        quality = row["quality"] or {}
        metrics = {m: quality.get(m) for m in TEXT_METRICS}
        metrics["score"] = None if row["score"] is None else row["score"] * 100
        metrics["pass_rate"] = None if row["passed"] is None else 100.0 * row["passed"]
        out.append({
            "id": row["id"], "c": row["combination"], "t": row["target_id"], "item": row["item_key"],
            "r": row["repetition"], "p": row["parameters"], "m": metrics, "ok": not row["error_code"],
            "error": row["error_code"], "latency_ms": row["latency_ms"], "cost_usd": row["cost_usd"],
            "at": row["created_at"].timestamp(), "text": row["excerpt"],
        })  # fmt: skip
    return out


@dataclass
class Observations:
    """One row per successful result: parameter values and every figure (NaN where absent)."""

    parameters: dict[str, np.ndarray]
    metrics: dict[str, np.ndarray]
    combinations: np.ndarray
    errors_by_combination: dict[int, int]

    @property
    def size(self) -> int:
        return len(self.combinations)


def observations(batch: Batch) -> Observations:
    """The batch's results as arrays, for the analysis."""
    text = [f"quality_{m}" for m in TEXT_METRICS]
    rows = list(
        results(batch).order_by("id").values_list(
            "combination", *text, "score", "passed", "latency_ms", "ttft_ms", "cost_usd", "output_tokens", "error_code",
        )
    )  # fmt: skip
    errors: dict[int, int] = {}
    for r in rows:
        if r[-1]:
            errors[r[0]] = errors.get(r[0], 0) + 1
    ok = [r[:-1] for r in rows if not r[-1]]
    width = 1 + len(TEXT_METRICS) + 2 + len(COST_METRICS)
    table = np.array([[np.nan if v is None else float(v) for v in r] for r in ok], dtype=float).reshape(len(ok), width)
    combos = table[:, 0].astype(np.int64) if len(ok) else np.array([], dtype=np.int64)
    metrics = {m: table[:, 1 + i] for i, m in enumerate(TEXT_METRICS)}
    column = 1 + len(TEXT_METRICS)
    metrics["score"] = table[:, column] * 100
    metrics["pass_rate"] = table[:, column + 1] * 100
    for i, name in enumerate(COST_METRICS, start=column + 2):
        metrics[name] = table[:, i]
    return Observations(parameter_arrays(batch.parameter_values, combos), metrics, combos, errors)


def parameter_arrays(values: Values, combos: np.ndarray) -> dict[str, np.ndarray]:
    """Each parameter's value for each combination index (mixed radix, last parameter fastest)."""
    arrays: dict[str, np.ndarray] = {}
    stride = 1
    for name in reversed(list(values)):
        options = np.asarray(values[name], dtype=float)
        arrays[name] = options[(combos // stride) % len(options)]
        stride *= len(options)
    return {name: arrays[name] for name in values}


def parameter_label(name: str) -> str:
    return PARAMETERS[name].label if name in PARAMETERS else name


# --- analysis of a batch ----------------------------------------------------------------------------


class ObjectiveError(ValueError):
    """A bad objective in a query; `field` names the parameter."""

    def __init__(self, field: str, problem: str):
        super().__init__(f"{field}: {problem}")
        self.field, self.problem = field, problem


def objective_from(params, default_metric: str) -> "analysis.Objective":
    """`?objective=<metric>`, or `?weights=quality:0.6,latency:0.3,cost:0.1` with `?quality_metric=`."""
    quality_metric = params.get("quality_metric") or (
        default_metric if default_metric in QUALITY_METRICS else "overall"
    )
    if quality_metric not in QUALITY_METRICS:
        raise ObjectiveError("quality_metric", f"one of {', '.join(QUALITY_METRICS)}")
    if raw := (params.get("weights") or "").strip():
        weights = []
        for part in raw.split(","):
            name, _, number = part.partition(":")
            name = name.strip()
            if name not in ("quality", "latency", "cost"):
                raise ObjectiveError(
                    "weights", f"{name!r}: weigh quality, latency and cost, e.g. quality:0.6,latency:0.4"
                )
            try:
                weight = float(number)
            except ValueError:
                raise ObjectiveError("weights", f"{name}: a number after the colon, not {number!r}") from None
            if not (0 <= weight < float("inf")):
                raise ObjectiveError("weights", f"{name}: a weight of 0 or more")
            weights.append((name, weight))
        if not any(w > 0 for _, w in weights):
            raise ObjectiveError("weights", "at least one weight above 0")
        return analysis.Objective(weights=tuple(weights), quality_metric=quality_metric)
    metric = params.get("objective") or default_metric
    if metric not in (*QUALITY_METRICS, *COST_METRICS) or metric in analysis.NEUTRAL:
        raise ObjectiveError(
            "objective",
            f"one of {', '.join(m for m in (*QUALITY_METRICS, *COST_METRICS) if m not in analysis.NEUTRAL)}",
        )
    return analysis.Objective(metric=metric, quality_metric=quality_metric)


def as_json(value):
    """Dataclasses, tuples and numpy numbers as plain JSON values; NaN and infinities as None."""
    if is_dataclass(value):
        value = asdict(value)
    if isinstance(value, dict):
        return {k: as_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [as_json(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def batch_analysis(batch: Batch) -> dict:
    """Per swept parameter: each figure's mean and 95% interval per value, ANOVA and Kruskal-Wallis;
    and every parameter-figure correlation."""
    data = observations(batch)
    return as_json({
        "batch": batch.pk, "n": data.size, "errors": sum(data.errors_by_combination.values()),
        "parameters": swept_parameters(batch.parameter_values),
        "effects": analysis.effects(data.parameters, data.metrics),
        "correlations": analysis.correlations(data.parameters, data.metrics),
    })  # fmt: skip


def batch_optimization(batch: Batch, objective: "analysis.Objective") -> dict:
    data = observations(batch)
    return as_json({
        "batch": batch.pk, **asdict(analysis.optimize(data.parameters, data.metrics, objective)),
        "correlations": [c for c in analysis.correlations(data.parameters, data.metrics)
                         if c.metric == (objective.quality_metric if objective.weights else objective.metric)],
    })  # fmt: skip


def batch_insights(batch: Batch, objective: "analysis.Objective") -> dict:
    data = observations(batch)
    found = analysis.insights(data.parameters, data.metrics, objective=objective)
    return as_json({"batch": batch.pk, "objective": objective.name, "n": data.size, "insights": found})


def result_rows_latest(batch: Batch, count: int, *, through_id: int | None = None) -> list[dict]:
    """The last `count` results (up to `through_id`), newest first."""
    rows = results(batch) if through_id is None else results(batch).filter(id__lte=through_id)
    last = list(rows.order_by("-id").values_list("id", flat=True)[:count])
    return list(reversed(result_rows(batch, after_id=min(last) - 1, limit=len(last)))) if last else []


# --- load sweeps ----------------------------------------------------------------------------------


def sweep_trials(sweep: LoadSweep) -> dict:
    """The sweep's figures across repeated trials, level by level (apps.batches.trials.level_trials): what
    the sweep page and the exports show, from one query."""
    return level_trials(sweep.steps.select_related("run__summary"))
