"""Performance prediction: a regression over the team's measured runs of one model variant on one
hardware profile (the seed's ModelingService, with honest intervals).

Features: mean input tokens, mean output tokens, concurrency. Targets: TTFT mean, TPOT mean,
E2E mean (ms) and output token throughput (tokens/s): all positive, so each is fitted on a log
scale: ordinary least squares of log(y) (numpy.linalg.lstsq), a 95% prediction interval
ŷ ± t(0.975, n−p) · s · √(1 + x₀ᵀ(XᵀX)⁻¹x₀) on that scale (scipy.stats.t), and both the prediction
and the interval mapped back with exp(): the prediction is the median of the fitted log-normal
spread, and the interval is positive by construction (no clipping). R² is on the log scale.
A feature that did not vary in the measured runs is left out of the model (and said so).

A target with fewer than three positive measurements, no degree of freedom left, or no spread at
all has "not enough data" for an interval: never a zero-width one.

Confidence (0–1) = max(0, adjusted R²) × exp(−d / 2), d the standardized distance from the
question to the nearest measured configuration; a question outside the measured range of any
feature is flagged as an extrapolation. Simulated runs are left out unless asked for.
"""

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from scipy import stats as scipy_stats

from apps.accounts.models import Team
from apps.hardware.models import PerformanceRun

MIN_RUNS = 6
FEATURES = ("input_tokens", "output_tokens", "concurrency")
TARGETS = {
    "ttft_ms": ("TTFT mean", "ms", "ttft_ms.mean"),
    "tpot_ms": ("TPOT mean", "ms", "tpot_ms.mean"),
    "e2e_ms": ("E2E mean", "ms", "e2e_ms.mean"),
    "output_throughput_tps": ("Output token throughput", "tok/s", "output_token_throughput_tps"),
}


MIN_POINTS = 3  # per target: fewer is "not enough data", never a zero-width interval
NO_INTERVAL = "not enough data for an interval"


class NotEnoughData(Exception):
    """The question cannot be answered from the team's runs; the message says why."""


@dataclass
class LogLinearFit:
    """A least-squares fit of log(y), its prediction at x₀ and the 95% interval, back on y's scale."""

    value: float  # exp(x₀ᵀβ)
    lower: float | None  # None: not enough data for an interval
    upper: float | None
    r_squared: float  # of log(y)
    adjusted_r_squared: float
    n: int
    dof: int


def log_linear_fit(design: np.ndarray, y: np.ndarray, design0: np.ndarray, level: float = 0.95) -> LogLinearFit | None:
    """Fit log(y) = Xβ on the rows where y is finite and positive, predict at `design0`.

    None when there are fewer than MIN_POINTS such rows, no degree of freedom left or a rank-
    deficient design. The interval is None (rather than zero-width or infinite) when the
    residuals have no spread or exp() of its bound does not fit a float."""
    y = np.asarray(y, dtype=float)
    rows = np.isfinite(y) & (y > 0)
    n, k = int(rows.sum()), design.shape[1]
    if n < MIN_POINTS or n - k < 1:
        return None
    a, log_y = design[rows], np.log(y[rows])
    beta, _, rank, _ = np.linalg.lstsq(a, log_y, rcond=None)
    if rank < k:
        return None
    residuals = log_y - a @ beta
    dof = n - k
    rss = float(residuals @ residuals)
    fitted = float(design0 @ beta)
    total = float(((log_y - log_y.mean()) ** 2).sum())
    r2 = 1.0 - rss / total if total > 0 else 1.0
    adjusted = 1.0 - (1.0 - r2) * (n - 1) / dof
    with np.errstate(over="ignore", under="ignore"):
        value = float(np.exp(fitted))
        lower = upper = None
        s2 = rss / dof
        # Residuals at rounding-error size are no spread: no interval rather than a zero-width one.
        if np.sqrt(s2) > 1e-9 * max(1.0, float(np.abs(log_y).max())):
            se = float(np.sqrt(s2 * (1.0 + design0 @ np.linalg.inv(a.T @ a) @ design0)))
            half = float(scipy_stats.t.ppf(0.5 + level / 2, dof)) * se
            lower, upper = float(np.exp(fitted - half)), float(np.exp(fitted + half))
            if not (lower > 0 and np.isfinite(upper)):
                lower = upper = None
    if not (value > 0 and np.isfinite(value)):
        return None
    return LogLinearFit(value, lower, upper, r2, adjusted, n, dof)


@dataclass
class TargetPrediction:
    target: str
    label: str
    unit: str
    value: float
    lower: float | None  # None: not enough data for an interval (see `interval_note`)
    upper: float | None
    r_squared: float  # of the log-scale fit
    n_runs: int
    interval_note: str = ""


@dataclass
class Prediction:
    variant_id: int
    hardware_id: int
    question: dict[str, float]
    predictions: list[TargetPrediction]
    confidence: float
    confidence_label: str
    extrapolation: list[str]  # features outside the measured range
    features_used: list[str]
    notes: list[str] = field(default_factory=list)
    n_runs: int = 0
    simulated_runs: int = 0  # simulated runs among them (only when they were asked for)
    method: str = "least squares of log(y); prediction and 95% interval exp() of the log-scale ones"

    @property
    def features_text(self) -> str:
        """The features in the model, in words."""
        return ", ".join(f.replace("_", " ") for f in self.features_used) or "no feature"


def _run_point(run: PerformanceRun) -> tuple[dict[str, float], dict[str, float]] | None:
    """(features, targets) of a run, or None when it lacks concurrency or a summary."""
    summary = getattr(run, "summary", None)
    if summary is None or not run.concurrency:
        return None
    inputs = summary.stat("input_tokens", "mean") or run.input_tokens_target
    outputs = summary.stat("output_tokens", "mean") or run.output_tokens_target
    if inputs is None or outputs is None:
        return None
    targets = {}
    for key, (_, _, path) in TARGETS.items():
        if "." in path:
            metric, stat = path.split(".")
            targets[key] = summary.stat(metric, stat)
        else:
            targets[key] = getattr(summary, path)
    return {
        "input_tokens": float(inputs),
        "output_tokens": float(outputs),
        "concurrency": float(run.concurrency),
    }, targets


def _runs(team: Team, variant_id: int | None = None, hardware_id: int | None = None, *, include_simulated: bool):
    runs = PerformanceRun.objects.filter(team=team, hardware__isnull=False, concurrency__isnull=False)
    if not include_simulated:
        runs = runs.filter(is_simulated=False)
    if variant_id is not None:
        runs = runs.filter(variant_id=variant_id, hardware_id=hardware_id)
    return runs.select_related("summary", "variant", "hardware")


def modeling_configurations(*, team: Team, include_simulated: bool = False) -> list[dict]:
    """Every model variant × hardware with runs, how many are usable, and whether that is enough."""
    usable: Counter = Counter()
    names: dict[tuple[int, int], tuple[str, str]] = {}
    for run in _runs(team, include_simulated=include_simulated):
        key = (run.variant_id, run.hardware_id)
        names[key] = (str(run.variant), run.hardware.name)
        if _run_point(run) is not None:
            usable[key] += 1
        else:
            usable.setdefault(key, 0)
    return [
        {
            "variant_id": v,
            "variant": names[(v, h)][0],
            "hardware_id": h,
            "hardware": names[(v, h)][1],
            "runs": usable[(v, h)],
            "enough_data": usable[(v, h)] >= MIN_RUNS,
        }
        for (v, h) in sorted(names, key=lambda k: names[k])
    ]


def predict(
    *,
    team: Team,
    variant_id: int,
    hardware_id: int,
    input_tokens: float,
    output_tokens: float,
    concurrency: float,
    include_simulated: bool = False,
) -> Prediction:
    """Predict TTFT, TPOT, E2E and throughput for a workload; raises NotEnoughData."""
    runs = list(_runs(team, variant_id, hardware_id, include_simulated=include_simulated))
    usable = [(r, p) for r, p in ((r, _run_point(r)) for r in runs) if p is not None]
    points = [p for _, p in usable]
    simulated_runs = sum(1 for r, _ in usable if r.is_simulated)
    if len(points) < MIN_RUNS:
        raise NotEnoughData(
            f"{len(points)} usable run(s) of this model variant on this hardware (with a concurrency and a "
            f"summary); at least {MIN_RUNS} are needed for a prediction."
        )
    question = {"input_tokens": input_tokens, "output_tokens": output_tokens, "concurrency": concurrency}
    matrix = np.array([[p[0][f] for f in FEATURES] for p in points], dtype=float)
    varying = [i for i, _ in enumerate(FEATURES) if np.ptp(matrix[:, i]) > 0]
    notes = [
        f"{FEATURES[i].replace('_', ' ')} was {matrix[0, i]:g} in every measured run, so it is not in the model."
        for i in range(len(FEATURES))
        if i not in varying
    ]
    x = matrix[:, varying]
    x0 = np.array([question[FEATURES[i]] for i in varying], dtype=float)

    extrapolation = [
        FEATURES[i]
        for i in range(len(FEATURES))
        if not matrix[:, i].min() <= question[FEATURES[i]] <= matrix[:, i].max()
    ]
    scale = x.std(axis=0, ddof=1) if x.shape[1] else np.array([])
    distance = float(np.min(np.sqrt((((x - x0) / scale) ** 2).sum(axis=1)))) if x.shape[1] else 0.0

    design = np.column_stack([np.ones(len(points)), x])
    design0 = np.concatenate([[1.0], x0])
    predictions, fits = [], []
    for key, (label, unit, _) in TARGETS.items():
        y = np.array([np.nan if p[1][key] is None else p[1][key] for p in points], dtype=float)
        fit = log_linear_fit(design, y, design0)
        if fit is None:
            present = int((np.isfinite(y) & (y > 0)).sum())
            if present:
                notes.append(f"{label}: {present} positive measurement(s), not enough data for a prediction.")
            continue
        fits.append(fit.adjusted_r_squared)
        predictions.append(
            TargetPrediction(
                target=key,
                label=label,
                unit=unit,
                value=fit.value,
                lower=fit.lower,
                upper=fit.upper,
                r_squared=fit.r_squared,
                n_runs=fit.n,
                interval_note="" if fit.lower is not None else NO_INTERVAL,
            )
        )
    if not predictions:
        raise NotEnoughData("The measured runs do not vary enough to fit a model.")
    confidence = max(0.0, float(np.mean(fits))) * float(np.exp(-distance / 2))
    label = "high" if confidence >= 0.7 else "medium" if confidence >= 0.4 else "low"
    if extrapolation:
        notes.append(f"Outside the measured range of: {', '.join(f.replace('_', ' ') for f in extrapolation)}.")
    return Prediction(
        variant_id=variant_id,
        hardware_id=hardware_id,
        question=question,
        predictions=predictions,
        confidence=confidence,
        confidence_label=label,
        extrapolation=extrapolation,
        features_used=[FEATURES[i] for i in varying],
        notes=notes,
        n_runs=len(points),
        simulated_runs=simulated_runs,
    )
