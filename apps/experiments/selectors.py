"""Figures of an experiment per target: pass rate with its Wilson 95% interval, mean score with a
t interval, mean text-quality metrics, latency and cost. Failed requests are counted apart."""

from dataclasses import dataclass

import numpy as np
from scipy import stats

from apps.experiments.models import Experiment, Response


def wilson_interval(passed: int, total: int, confidence: float = 0.95) -> tuple[float, float] | None:
    """Wilson score interval of a proportion (scipy's binomtest)."""
    if total == 0:
        return None
    ci = stats.binomtest(passed, total).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def mean_interval(values: list[float], confidence: float = 0.95) -> tuple[float, float] | None:
    if len(values) < 2:
        return None
    array = np.asarray(values, dtype=float)
    sem = stats.sem(array)
    if sem == 0:  # every value the same: the interval is that value
        return float(array.mean()), float(array.mean())
    low, high = stats.t.interval(confidence, len(array) - 1, loc=array.mean(), scale=sem)
    return float(low), float(high)


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None


@dataclass
class TargetSummary:
    target_id: int
    label: str
    responses: int
    errors: int
    evaluated: int
    passed: int
    pass_rate: float | None
    pass_rate_ci: tuple[float, float] | None
    mean_score: float | None
    mean_score_ci: tuple[float, float] | None
    quality: dict[str, float]
    mean_latency_ms: float | None
    mean_ttft_ms: float | None
    cost_usd: float


def experiment_summary(experiment: Experiment) -> list[TargetSummary]:
    summaries = []
    for target in experiment.targets.select_related("endpoint"):
        rows = list(Response.objects.filter(target=target))
        ok = [r for r in rows if not r.error_code]
        judged = [r for r in ok if r.passed is not None]
        scores = [r.score for r in judged if r.score is not None]
        passed = sum(1 for r in judged if r.passed)
        metric_names = sorted({k for r in ok for k in r.quality})
        summaries.append(
            TargetSummary(
                target_id=target.pk,
                label=str(target) + (" (simulated)" if target.endpoint.is_simulated else ""),
                responses=len(rows),
                errors=len(rows) - len(ok),
                evaluated=len(judged),
                passed=passed,
                pass_rate=passed / len(judged) if judged else None,
                pass_rate_ci=wilson_interval(passed, len(judged)),
                mean_score=float(np.mean(scores)) if scores else None,
                mean_score_ci=mean_interval(scores),
                quality={m: float(np.mean([r.quality[m] for r in ok if m in r.quality])) for m in metric_names},
                mean_latency_ms=_mean([r.latency_ms for r in ok]),
                mean_ttft_ms=_mean([r.ttft_ms for r in ok]),
                cost_usd=float(sum(r.cost_usd or 0 for r in rows)),
            )
        )
    return summaries


def compare_targets(experiment: Experiment, target_ids: list[int] | None = None) -> dict:
    """Two targets side by side: pass-rate difference with Fisher's exact test and score difference
    with a two-sided Mann-Whitney U test; "not enough data" where a side has none."""
    targets = list(experiment.targets.order_by("pk"))
    chosen = [t for t in targets if t.pk in target_ids] if target_ids else targets[:2]
    if len(chosen) != 2:
        raise ValueError("Choose exactly two targets of this experiment.")
    sides = []
    for target in chosen:
        rows = list(Response.objects.filter(target=target, error_code="", passed__isnull=False))
        sides.append(
            {
                "target_id": target.pk,
                "label": str(target),
                "passed": sum(r.passed for r in rows),
                "evaluated": len(rows),
                "scores": [r.score for r in rows if r.score is not None],
            }
        )
    a, b = sides
    result: dict = {"targets": [{k: v for k, v in s.items() if k != "scores"} for s in sides]}
    if a["evaluated"] and b["evaluated"]:
        table = [[a["passed"], a["evaluated"] - a["passed"]], [b["passed"], b["evaluated"] - b["passed"]]]
        result["pass_rate_difference"] = b["passed"] / b["evaluated"] - a["passed"] / a["evaluated"]
        result["pass_rate_p_value"] = float(stats.fisher_exact(table).pvalue)
    else:
        result["pass_rate_difference"] = result["pass_rate_p_value"] = None
    if a["scores"] and b["scores"]:
        result["mean_score_difference"] = float(np.mean(b["scores"]) - np.mean(a["scores"]))
        result["mean_score_p_value"] = float(
            stats.mannwhitneyu(a["scores"], b["scores"], alternative="two-sided").pvalue
        )
    else:
        result["mean_score_difference"] = result["mean_score_p_value"] = None
    return result
