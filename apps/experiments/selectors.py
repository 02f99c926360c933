"""Figures of an experiment per target: pass rate with its Wilson 95% interval, mean score with a
bootstrap 95% interval, mean text-quality metrics, latency and cost. Failed requests are counted apart.

Every interval stays inside what is possible by construction: Wilson for proportions, and for means a
bootstrap over the observed values (`scipy.stats.bootstrap`), whose bounds are means of resamples and so
lie between the smallest and the largest value seen (a 0–1 score stays in 0–1, a latency stays positive).
Fewer than MIN_INTERVAL_N values give no interval ("not enough data"), never a zero-width one."""

import warnings
from dataclasses import dataclass

import numpy as np
from django.db.models import Exists, OuterRef, QuerySet
from scipy import stats

from apps.experiments.models import Experiment, Response, TestCase

MIN_INTERVAL_N = 3
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 20240611  # fixed: the same responses always give the same interval
BCA_MAX_N = 1000  # BCa's jackknife costs n²; above this the percentile bootstrap (n is large, they agree)


def live_lineage() -> Exists:
    """True for a test case whose lineage still has a current version (it is not retired)."""
    return Exists(TestCase.objects.filter(lineage=OuterRef("lineage"), is_current=True))


def runnable_test_cases(team) -> QuerySet[TestCase]:
    """The team's approved versions that experiments, sweeps and suites may use: not retired."""
    return TestCase.objects.filter(live_lineage(), team=team, status=TestCase.Status.APPROVED)


def wilson_interval(passed: int, total: int, confidence: float = 0.95) -> tuple[float, float] | None:
    """Wilson score interval of a proportion (scipy's binomtest)."""
    if total == 0:
        return None
    ci = stats.binomtest(passed, total).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def mean_interval(
    values: list[float], confidence: float = 0.95, *, bounds: tuple[float, float] | None = None
) -> tuple[float, float] | None:
    """A bootstrap interval of the mean (`scipy.stats.bootstrap`, BCa, percentile for large n or when
    BCa cannot be computed), inside [min, max] of the values by construction; None with fewer than
    MIN_INTERVAL_N values or when every value is the same (there is no spread to resample). With
    `bounds` (a score's range), values that all sit on one bound are pass/fail-like and get the
    Wilson interval of n successes (or failures) out of n, scaled to the range."""
    array = np.asarray([v for v in values if v is not None], dtype=float)
    if len(array) < MIN_INTERVAL_N:
        return None
    if np.all(array == array[0]):
        if bounds is None or array[0] not in bounds:
            return None
        low, high = bounds
        ci = wilson_interval(len(array) if array[0] == high else 0, len(array), confidence)
        return low + ci[0] * (high - low), low + ci[1] * (high - low)
    method = "BCa" if len(array) <= BCA_MAX_N else "percentile"
    ci = _bootstrap(array, confidence, method)
    if method == "BCa" and not np.all(np.isfinite(ci)):  # e.g. resamples too alike for the acceleration
        ci = _bootstrap(array, confidence, "percentile")
    return float(ci[0]), float(ci[1])


def _bootstrap(array: np.ndarray, confidence: float, method: str) -> tuple[float, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # DegenerateDataWarning: handled by the caller (NaN bounds)
        result = stats.bootstrap(
            (array,), np.mean, n_resamples=BOOTSTRAP_RESAMPLES, confidence_level=confidence, method=method,
            rng=np.random.default_rng(BOOTSTRAP_SEED), batch=500,
        )  # fmt: skip
    return result.confidence_interval.low, result.confidence_interval.high


def interval_note(values: list[float]) -> str:
    """Why a mean has no interval, in words ("" when it has one)."""
    present = [v for v in values if v is not None]
    if not present:
        return ""
    if len(present) < MIN_INTERVAL_N:
        return f"not enough data (n = {len(present)})"
    if len(set(present)) == 1:
        return f"no interval: all {len(present)} equal"
    return ""


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None


SCORE_BOUNDS = (0.0, 1.0)  # every evaluator's score is a share: 0 worst, 1 best


@dataclass
class TargetSummary:
    target_id: int
    label: str  # the target, "(simulated)" appended for simulated endpoints (exports)
    name: str  # the target alone (pages put a "simulated" badge beside it)
    endpoint_name: str
    model: str
    is_simulated: bool
    responses: int
    errors: int
    evaluated: int
    passed: int
    pass_rate: float | None
    pass_rate_ci: tuple[float, float] | None
    mean_score: float | None
    mean_score_ci: tuple[float, float] | None
    pass_rate_ci_note: str  # why there is no interval, in words ("" when there is one)
    mean_score_ci_note: str
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
        simulated = target.endpoint.is_simulated or any(r.is_simulated for r in rows)
        pass_ci = wilson_interval(passed, len(judged)) if len(judged) >= MIN_INTERVAL_N else None
        score_ci = mean_interval(scores, bounds=SCORE_BOUNDS)
        summaries.append(
            TargetSummary(
                target_id=target.pk,
                label=str(target) + (" (simulated)" if simulated else ""),
                name=str(target),
                endpoint_name=target.endpoint.name,
                model=target.model,
                is_simulated=simulated,
                responses=len(rows),
                errors=len(rows) - len(ok),
                evaluated=len(judged),
                passed=passed,
                pass_rate=passed / len(judged) if judged else None,
                pass_rate_ci=pass_ci,
                mean_score=float(np.mean(scores)) if scores else None,
                mean_score_ci=score_ci,
                pass_rate_ci_note="" if pass_ci or not judged else interval_note([float(r.passed) for r in judged]),
                mean_score_ci_note="" if score_ci else interval_note(scores),
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
