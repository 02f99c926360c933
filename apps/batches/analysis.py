"""What the parameters of a sweep did: effects, optimization, correlations and insights.

Pure functions over arrays (one row per successful result): `parameters` maps a parameter to its
value per row, `metrics` a figure to its value per row (NaN where the row has none: an undecided
evaluation, a text metric of a failed request). Every interval is 95% and stays inside what the
figure can be by construction (Wilson for pass rates and 0/100 scores, Wilson on the effective sample
size for the 0–100 quality scale, log scale for latency, cost and tokens: see mean_intervals); fewer
than three values are "not enough data", never a zero-width interval. Statistics come from numpy and
scipy.stats. The definitions are in docs/metrics.md ("Parameter sweeps"); the analytics app runs the
same functions over many experiments and batches.
"""

import math
import warnings
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import stats

from llmbench.humanize import number_text, p_value_text

ALPHA = 0.05
QUALITY_UNIT = "points"
UNITS = {"latency_ms": "ms", "ttft_ms": "ms", "cost_usd": "USD", "output_tokens": "tokens"}
LOWER_IS_BETTER = frozenset({"latency_ms", "ttft_ms", "cost_usd"})
NEUTRAL = frozenset({"output_tokens"})  # neither better nor worse: described, never optimized
WEIGHTED = "weighted"  # the objective name of a weighted mix of quality, latency and cost

Arrays = dict[str, np.ndarray]


def unit(metric: str) -> str:
    return UNITS.get(metric, QUALITY_UNIT)


def label(name: str) -> str:
    names = {"overall": "overall quality", "score": "evaluator score", "pass_rate": "pass rate",
             "latency_ms": "latency", "ttft_ms": "TTFT", "cost_usd": "cost", "output_tokens": "output tokens",
             "top_p": "top_p", "max_tokens": "max_tokens", WEIGHTED: "weighted objective"}  # fmt: skip
    return names.get(name, name.replace("_", " "))


def format_p(p: float | None) -> str:
    """ "p < 0.001" or "p = 0.012" (llmbench.humanize.p_value_text), "p n/a" when there is none."""
    if p is None or math.isnan(p):
        return "p n/a"
    text = p_value_text(p)
    return f"p {text}" if text.startswith("<") else f"p = {text}"


def format_value(value) -> str:
    """A parameter value (or a load level) as it was set, with thousands separators: max_tokens 200, not
    200.0; temperature 0.7, not 0.700; 0.05; 1,000. The shared formatter for whole numbers and missing
    values; other numbers keep their own digits (10 significant, so 0.30000000000000004 is 0.3)."""
    if value is None or isinstance(value, bool) or not isinstance(value, int | float) or float(value).is_integer():
        return number_text(value)
    if not math.isfinite(value):
        return number_text(value)
    return f"{float(value):,.10g}"


def format_amount(metric: str, value: float) -> str:
    if metric == "cost_usd":
        return f"${number_text(value, 6).rstrip('0').rstrip('.')}"
    if metric in ("latency_ms", "ttft_ms"):
        return f"{number_text(value, 0 if abs(value) >= 10 else 1)} ms"
    return f"{number_text(value, 1)} {unit(metric)}"


def _finite(values: np.ndarray) -> np.ndarray:
    return values[np.isfinite(values)]


# --- intervals ------------------------------------------------------------------------------------
# Every interval is 95% and stays inside what the figure can be, by construction (never by clipping);
# below MIN_INTERVAL_N values there is none ("not enough data"), and values that are all the same
# (inside the range) have no spread to estimate, so there is none either: never a zero-width interval.

MIN_INTERVAL_N = 3
CONFIDENCE = 0.95
SCALE = (0.0, 100.0)  # the quality scale: text metrics, the evaluator's score × 100, the weighted objective
PROPORTIONS = frozenset({"pass_rate"})  # 100/0 per result: Wilson
POSITIVE = frozenset({"latency_ms", "ttft_ms", "cost_usd", "output_tokens"})  # log scale


def interval_method(metric: str) -> str:
    """ "wilson" (pass rates), "log" (positive figures) or "bounded" (the 0–100 quality scale)."""
    return "wilson" if metric in PROPORTIONS else "log" if metric in POSITIVE else "bounded"


@dataclass(frozen=True)
class Interval:
    """A 95% interval of a mean, or None bounds and the reason in `note`."""

    low: float | None
    high: float | None
    note: str = ""


def wilson_bounds(proportion, n, confidence: float = CONFIDENCE) -> tuple[np.ndarray, np.ndarray]:
    """Wilson's score interval of proportions for (possibly fractional) numbers of trials n, elementwise;
    for whole counts the figures of scipy.stats.binomtest(k, n).proportion_ci(method="wilson"). Inside
    [0, 1] by construction."""
    p, n = np.asarray(proportion, dtype=float), np.asarray(n, dtype=float)
    z = stats.norm.ppf((1 + confidence) / 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        denominator = 1 + z * z / n
        centre = (p + z * z / (2 * n)) / denominator
        half = z / denominator * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


def mean_intervals(metric: str, counts, means, sds, binary=None, confidence: float = CONFIDENCE) -> list[Interval]:
    """The 95% interval of each group's mean from its count, mean and sample standard deviation
    (`binary`: per group, whether every value is 0 or 100):

    * pass rates, and any 0–100 figure whose values are all 0 or 100 (an exact-match score): Wilson's
      score interval of the proportion, so a score and a pass rate of the same results agree;
    * otherwise on the 0–100 quality scale: Wilson's interval on the Korn & Graubard (1998) effective
      sample size n_eff = p(1 − p)/Var(p̂) · (z / t(0.975, n − 1))², p̂ the mean rescaled to 0–1 and
      Var(p̂) = s²/n: inside 0–100, as wide as Student t for few values, close to it for many;
    * positive figures (latency, cost, tokens): the log-scale (delta method) interval mean ×/÷
      exp(t(0.975, n − 1) · s / (mean · √n)), which never reaches 0.
    """
    counts = np.asarray(counts, dtype=float)
    means, sds = np.asarray(means, dtype=float), np.asarray(sds, dtype=float)
    method = interval_method(metric)
    binary = np.zeros(len(counts), dtype=bool) if binary is None else np.asarray(binary, dtype=bool)
    enough = counts >= MIN_INTERVAL_N
    with np.errstate(divide="ignore", invalid="ignore"):
        if method == "log":
            half = stats.t.ppf((1 + confidence) / 2, np.maximum(counts - 1, 1)) * sds / (means * np.sqrt(counts))
            low, high = means * np.exp(-half), means * np.exp(half)
            defined = enough & (means > 0) & (sds > 0)
        else:
            bottom, top = SCALE
            width = top - bottom
            p = (means - bottom) / width
            at_bound = (p <= 0) | (p >= 1)
            proportion = binary | at_bound | (method == "wilson")  # a mean of 0/100 values is a proportion
            z = stats.norm.ppf((1 + confidence) / 2)
            t = stats.t.ppf((1 + confidence) / 2, np.maximum(counts - 1, 1))
            n_eff = np.where(proportion, counts, p * (1 - p) / ((sds / width) ** 2 / counts) * (z / t) ** 2)
            lo, hi = wilson_bounds(np.clip(p, 0, 1), n_eff, confidence)  # the clip: a rounding error at most
            low, high = bottom + width * lo, bottom + width * hi
            defined = enough & ((sds > 0) | proportion)
    out = []
    for i in range(len(counts)):
        n = int(counts[i])
        if n == 0:
            out.append(Interval(None, None, "no results"))
        elif not enough[i]:
            out.append(Interval(None, None, f"not enough data for an interval (it needs {MIN_INTERVAL_N} results)"))
        elif not defined[i] or not (np.isfinite(low[i]) and np.isfinite(high[i])):
            out.append(Interval(None, None, f"no spread: all {n} results are equal"))
        else:
            out.append(Interval(float(low[i]), float(high[i])))
    return out


def mean_interval(metric: str, values: np.ndarray, confidence: float = CONFIDENCE) -> Interval:
    """The 95% interval of the mean of `values` (see mean_intervals)."""
    return _group_intervals(metric, [_finite(np.asarray(values, dtype=float))], confidence)[0]


def _group_intervals(metric: str, groups: list[np.ndarray], confidence: float = CONFIDENCE) -> list[Interval]:
    counts = [len(g) for g in groups]
    means = [float(np.mean(g)) if len(g) else np.nan for g in groups]
    sds = [float(np.std(g, ddof=1)) if len(g) >= 2 else 0.0 for g in groups]
    binary = [bool(len(g)) and bool(np.all((g == SCALE[0]) | (g == SCALE[1]))) for g in groups]
    return mean_intervals(metric, counts, means, sds, binary, confidence)


def _quiet(test, *groups):
    """A scipy test's (statistic, p) with its warnings about degenerate input silenced; None when
    the input cannot be tested (every value identical, or too few)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            result = test(*groups)
        except ValueError:
            return None
    statistic, p = float(result[0]), float(result[1])
    return None if math.isnan(p) else (statistic, p)


# --- effects ------------------------------------------------------------------------------------


@dataclass
class ValueFigures:
    value: float
    n: int
    mean: float | None
    ci_low: float | None
    ci_high: float | None
    ci_note: str = ""  # why there is no interval: "not enough data for an interval (…)", "no spread: …"


@dataclass
class Effect:
    """What one parameter did to one metric: the mean per value and whether it matters at all."""

    parameter: str
    metric: str
    unit: str
    n: int
    values: list[ValueFigures]
    anova_f: float | None
    anova_p: float | None
    kruskal_h: float | None
    kruskal_p: float | None
    significant: bool
    note: str = ""


def _groups(parameter: np.ndarray, metric: np.ndarray) -> list[tuple[float, np.ndarray]]:
    """(value, the metric's values at it) for each value of the parameter, in value order."""
    keep = np.isfinite(metric) & np.isfinite(parameter)
    p, m = parameter[keep], metric[keep]
    if not len(p):  # np.split of an empty array still gives one (empty) part
        return []
    order = np.argsort(p, kind="stable")
    p, m = p[order], m[order]
    levels, starts = np.unique(p, return_index=True)
    return [(float(v), part) for v, part in zip(levels, np.split(m, starts[1:]), strict=True)]


def effect(parameter_name: str, parameter: np.ndarray, metric_name: str, metric: np.ndarray) -> Effect:
    """Mean and 95% interval per value; one-way ANOVA and Kruskal-Wallis across the values
    (Kruskal-Wallis decides "significant": the figures are bounded or skewed, not normal)."""
    groups = _groups(parameter, metric)
    figures = []
    intervals = _group_intervals(metric_name, [values for _, values in groups])
    for (value, values), ci in zip(groups, intervals, strict=True):
        figures.append(ValueFigures(value, len(values), float(np.mean(values)) if len(values) else None,
                                    ci.low, ci.high, ci.note))  # fmt: skip
    testable = [values for _, values in groups if len(values)]
    n = int(sum(len(v) for v in testable))
    anova = kruskal = None
    note = ""
    if len(testable) < 2:
        note = "only one value has results"
    elif np.ptp(np.concatenate(testable)) == 0:
        note = "every result has the same value"
    else:
        anova = _quiet(stats.f_oneway, *testable) if all(len(v) >= 2 for v in testable) else None
        kruskal = _quiet(stats.kruskal, *testable)
    return Effect(
        parameter=parameter_name, metric=metric_name, unit=unit(metric_name), n=n, values=figures,
        anova_f=anova[0] if anova else None, anova_p=anova[1] if anova else None,
        kruskal_h=kruskal[0] if kruskal else None, kruskal_p=kruskal[1] if kruskal else None,
        significant=bool(kruskal and kruskal[1] < ALPHA), note=note,
    )  # fmt: skip


def effects(parameters: Arrays, metrics: Arrays) -> list[Effect]:
    """Every swept parameter (two or more values) against every metric with data."""
    return [
        effect(p, parameters[p], m, metrics[m])
        for p in parameters
        if len(np.unique(_finite(parameters[p]))) > 1
        for m in metrics
        if np.isfinite(metrics[m]).any()
    ]


# --- correlations ---------------------------------------------------------------------------------


@dataclass
class Correlation:
    parameter: str
    metric: str
    n: int
    pearson_r: float
    pearson_p: float
    spearman_rho: float
    spearman_p: float
    significant: bool  # Spearman p < 0.05
    strength: str  # of |ρ|: strong ≥ 0.5, moderate ≥ 0.3, weak ≥ 0.1, else negligible


def _strength(rho: float) -> str:
    size = abs(rho)
    return "strong" if size >= 0.5 else "moderate" if size >= 0.3 else "weak" if size >= 0.1 else "negligible"


def correlations(parameters: Arrays, metrics: Arrays) -> list[Correlation]:
    """Pearson and Spearman correlation (with p-values) of each swept parameter with each metric,
    over the rows that have both; pairs where either side never varies are left out."""
    out = []
    for p, x_all in parameters.items():
        for m, y_all in metrics.items():
            keep = np.isfinite(x_all) & np.isfinite(y_all)
            x, y = x_all[keep], y_all[keep]
            if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
                continue
            pearson = _quiet(stats.pearsonr, x, y)
            spearman = _quiet(stats.spearmanr, x, y)
            if pearson is None or spearman is None:
                continue
            out.append(Correlation(p, m, len(x), pearson[0], pearson[1], spearman[0], spearman[1],
                                   spearman[1] < ALPHA, _strength(spearman[0])))  # fmt: skip
    return out


# --- optimization ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Objective:
    """A metric to maximize (quality) or minimize (latency, cost), or a weighted mix of quality,
    latency and cost (each scaled to 0–1 over the results, latency and cost inverted; the mix is
    0–100, higher is better)."""

    metric: str = "overall"
    weights: tuple[tuple[str, float], ...] = ()  # (("quality", 0.6), ("latency", 0.3), ("cost", 0.1))
    quality_metric: str = "overall"

    @property
    def name(self) -> str:
        return WEIGHTED if self.weights else self.metric

    @property
    def maximize(self) -> bool:
        return bool(self.weights) or self.metric not in LOWER_IS_BETTER

    def describe(self) -> str:
        if not self.weights:
            return label(self.metric)
        parts = ", ".join(f"{name} {number_text(weight)}" for name, weight in self.weights)
        return f"weighted objective ({parts}; quality = {label(self.quality_metric)})"


WEIGHT_METRICS = {"latency": "latency_ms", "cost": "cost_usd"}


def objective_values(metrics: Arrays, objective: Objective) -> tuple[np.ndarray, list[str]]:
    """The objective per row, and notes on parts left out (a part that never varies)."""
    if not objective.weights:
        return metrics[objective.metric], []
    notes, total, mix = [], 0.0, None
    for part, weight in objective.weights:
        if weight <= 0:
            continue
        values = metrics[objective.quality_metric if part == "quality" else WEIGHT_METRICS[part]]
        finite = _finite(values)
        if not len(finite) or np.ptp(finite) == 0:
            notes.append(f"{part} left out: it does not vary")
            continue
        scaled = (values - finite.min()) / np.ptp(finite)
        if part != "quality":
            scaled = 1.0 - scaled
        mix = weight * scaled if mix is None else mix + weight * scaled
        total += weight
    if mix is None:
        return np.full(len(next(iter(metrics.values()))), np.nan), notes
    return 100.0 * mix / total, notes


@dataclass
class OptimalValue:
    """The best value of one parameter for the objective, pooled over the other parameters."""

    parameter: str
    value: float
    mean: float
    ci_low: float | None
    ci_high: float | None
    n: int
    confidence: float | None  # 1 − one-sided Welch p against the runner-up value
    runner_up: float | None
    effect_points: float  # mean at the value − the batch mean, in the objective's unit
    effect_pct: float | None  # the same in percent of the batch mean
    tested_range: tuple[float, float]
    recommended_range: tuple[float, float]
    reasoning: str
    ci_note: str = ""


@dataclass
class BestCombination:
    parameters: dict[str, float]
    mean: float
    ci_low: float | None
    ci_high: float | None
    n: int
    ci_note: str = ""


@dataclass
class Optimization:
    objective: str
    description: str
    unit: str
    maximize: bool
    n: int
    batch_mean: float | None
    best_combination: BestCombination | None
    optimal: list[OptimalValue] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _best_first(groups: list[tuple[float, float, np.ndarray]], maximize: bool) -> list[tuple]:
    """(value, mean, values) groups, the best mean first."""
    return sorted(groups, key=lambda t: -t[1] if maximize else t[1])


def _recommended_span(ordered: list[tuple], position: int, bound: float | None, maximize: bool) -> tuple[float, float]:
    """The run of neighbouring values around the best whose means stay within `bound`."""

    def within(group) -> bool:
        return bound is not None and (group[1] >= bound if maximize else group[1] <= bound)

    low = high = position
    while low > 0 and within(ordered[low - 1]):
        low -= 1
    while high < len(ordered) - 1 and within(ordered[high + 1]):
        high += 1
    return ordered[low][0], ordered[high][0]


def _optimal_value(name: str, x: np.ndarray, y: np.ndarray, objective: Objective, batch_mean: float,
                   interval_metric: str) -> OptimalValue:  # fmt: skip
    has = np.isfinite(x)
    x, y = x[has], y[has]
    groups = [(float(v), float(np.mean(y[x == v])), y[x == v]) for v in np.unique(x)]
    ranked = _best_first(groups, objective.maximize)
    value, mean, best = ranked[0]
    interval = mean_interval(interval_metric, best)
    ci = None if interval.low is None else (interval.low, interval.high)
    runner_up = ranked[1] if len(ranked) > 1 else None
    confidence = None
    if runner_up is not None and len(best) >= MIN_INTERVAL_N and len(runner_up[2]) >= MIN_INTERVAL_N:
        alternative = "greater" if objective.maximize else "less"
        test = _quiet(lambda a, b: stats.ttest_ind(a, b, equal_var=False, alternative=alternative), best, runner_up[2])
        confidence = None if test is None else 1.0 - test[1]
    ordered = sorted(groups)
    bound = (ci[0] if objective.maximize else ci[1]) if ci else None
    recommended = _recommended_span(ordered, [g[0] for g in ordered].index(value), bound, objective.maximize)
    if ci is None:
        reasoning = f"{interval.note} at {format_value(value)}: no range to recommend"
    else:
        edge = "≥" if objective.maximize else "≤"
        reasoning = (
            f"values {format_value(recommended[0])}–{format_value(recommended[1])} keep the mean "
            f"{label(objective.name)} {edge} {number_text(bound)}, the 95% CI bound of the best value"
        )
    return OptimalValue(
        parameter=name, value=value, mean=mean, ci_low=ci[0] if ci else None, ci_high=ci[1] if ci else None,
        n=len(best), confidence=confidence, runner_up=runner_up[0] if runner_up else None,
        effect_points=mean - batch_mean, effect_pct=(mean - batch_mean) / abs(batch_mean) * 100 if batch_mean else None,
        tested_range=(ordered[0][0], ordered[-1][0]), recommended_range=recommended, reasoning=reasoning,
        ci_note=interval.note,
    )  # fmt: skip


def optimize(parameters: Arrays, metrics: Arrays, objective: Objective) -> Optimization:
    """Best value per parameter (with confidence, effect and recommended range) and the best
    combination of values, for the objective."""
    values, notes = objective_values(metrics, objective)
    keep = np.isfinite(values)
    y = values[keep]
    unit_name = "points" if objective.weights else unit(objective.metric)
    result = Optimization(objective.name, objective.describe(), unit_name, objective.maximize, int(keep.sum()),
                          float(np.mean(y)) if len(y) else None, None, notes=notes)  # fmt: skip
    if not len(y):
        result.notes.append("no results with this objective yet")
        return result
    batch_mean = float(np.mean(y))
    interval_metric = objective.metric if not objective.weights else WEIGHTED
    swept = [p for p in parameters if len(np.unique(_finite(parameters[p][keep]))) > 1]
    for name in swept:
        result.optimal.append(_optimal_value(name, parameters[name][keep], y, objective, batch_mean, interval_metric))
    if parameters:
        names = list(parameters)
        table = np.column_stack([np.nan_to_num(parameters[p][keep], nan=-1e300) for p in names])
        keys, inverse = np.unique(table, axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
        sums = np.bincount(inverse, weights=y)
        counts = np.bincount(inverse)
        means = sums / counts
        best_index = int(np.argmax(means) if objective.maximize else np.argmin(means))
        members = y[inverse == best_index]
        ci = mean_interval(interval_metric, members)
        result.best_combination = BestCombination(
            parameters={p: float(v) for p, v in zip(names, keys[best_index], strict=True) if v != -1e300},
            mean=float(means[best_index]), ci_low=ci.low, ci_high=ci.high, n=int(counts[best_index]), ci_note=ci.note,
        )  # fmt: skip
    return result


# --- insights ---------------------------------------------------------------------------------------


@dataclass
class Insight:
    """One sentence that cites its numbers; `kind` says which rule made it."""

    kind: str  # threshold | no_effect | best | correlation
    text: str
    parameter: str | None = None
    metric: str | None = None
    numbers: dict = field(default_factory=dict)


@dataclass
class Split:
    parameter: str
    metric: str
    threshold: float
    below_mean: float
    above_mean: float
    below_n: int
    above_n: int
    p: float  # Mann-Whitney U, two-sided
    p_adjusted: float  # × the number of splits tried (Bonferroni)

    @property
    def difference(self) -> float:
        return self.above_mean - self.below_mean


MAX_CUTS = 20  # thresholds tried per parameter and figure at most


def _cuts(levels: np.ndarray) -> np.ndarray:
    """The thresholds to try: every value but the last, or MAX_CUTS of them evenly spread over the values
    when there are more (a sweep of 100 temperatures)."""
    candidates = levels[:-1]
    if len(candidates) <= MAX_CUTS:
        return candidates
    return candidates[np.unique(np.linspace(0, len(candidates) - 1, MAX_CUTS).round().astype(int))]


def _split_tests(x: np.ndarray, y: np.ndarray, cuts: np.ndarray) -> list[tuple[int, int, float, float, float | None]]:
    """(n below, n above, mean below, mean above, two-sided Mann-Whitney p) for each cut "x ≤ t".

    The ranks and ties of y are the same for every cut, so they are computed once: U of the lower group
    is the sum of its ranks − n₁(n₁+1)/2, p the normal approximation with tie and continuity correction,
    exactly as scipy.stats.mannwhitneyu computes it when both groups are larger than 8 (or any value is
    tied); a cut with a group of 8 or fewer goes to scipy itself, which may use the exact distribution."""
    order = np.argsort(x, kind="stable")
    xs, ys = x[order], y[order]
    ranks = stats.rankdata(ys)
    _, tie_counts = np.unique(ys, return_counts=True)
    tie_term = float(np.sum(tie_counts.astype(float) ** 3 - tie_counts))
    rank_sums, value_sums = np.cumsum(ranks), np.cumsum(ys)
    n, total = len(ys), float(value_sums[-1]) if len(ys) else 0.0
    out = []
    for threshold in cuts:
        n1 = int(np.searchsorted(xs, threshold, side="right"))
        n2 = n - n1
        if n1 < 2 or n2 < 2:
            out.append((n1, n2, float("nan"), float("nan"), None))
            continue
        mean_below, mean_above = value_sums[n1 - 1] / n1, (total - value_sums[n1 - 1]) / n2
        if n1 <= 8 or n2 <= 8:
            test = _quiet(lambda a, b: stats.mannwhitneyu(a, b, alternative="two-sided"), ys[:n1], ys[n1:])
            out.append((n1, n2, mean_below, mean_above, None if test is None else test[1]))
            continue
        u1 = rank_sums[n1 - 1] - n1 * (n1 + 1) / 2
        u = max(u1, n1 * n2 - u1)
        spread = math.sqrt(n1 * n2 / 12 * ((n + 1) - tie_term / (n * (n - 1))))
        p = None if spread == 0 else float(min(1.0, 2 * stats.norm.sf((u - n1 * n2 / 2 - 0.5) / spread)))
        out.append((n1, n2, mean_below, mean_above, p))
    return out


def best_split(parameter_name: str, parameter: np.ndarray, metric_name: str, metric: np.ndarray) -> Split | None:
    """The cut "value ≤ t against value > t" with the largest difference in mean among the cuts
    whose Mann-Whitney U test stays significant after a Bonferroni correction over the cuts tried
    (every value, or MAX_CUTS of them spread evenly)."""
    keep = np.isfinite(parameter) & np.isfinite(metric)
    x, y = parameter[keep], metric[keep]
    cuts = _cuts(np.unique(x))
    tries = len(cuts)
    found = None
    for threshold, (n1, n2, below_mean, above_mean, p) in zip(cuts, _split_tests(x, y, cuts), strict=True):
        if p is None:
            continue
        split = Split(parameter_name, metric_name, float(threshold), float(below_mean), float(above_mean),
                      n1, n2, p, min(1.0, p * tries))  # fmt: skip
        if split.p_adjusted < ALPHA and (found is None or abs(split.difference) > abs(found.difference)):
            found = split
    return found


def _threshold_sentence(split: Split) -> str:
    direction = "raises" if split.difference > 0 else "lowers"
    return (
        f"{label(split.parameter)} above {format_value(split.threshold)} {direction} {label(split.metric)} by "
        f"{format_amount(split.metric, abs(split.difference))} ({format_amount(split.metric, split.below_mean)} → "
        f"{format_amount(split.metric, split.above_mean)}; Mann-Whitney {format_p(split.p_adjusted)}, "
        f"Bonferroni-adjusted; n = {split.below_n} and {split.above_n})."
    )


def insights(parameters: Arrays, metrics: Arrays, *, objective: Objective, optimization: Optimization | None = None,
             correlation_list: list[Correlation] | None = None, limit: int = 10) -> list[Insight]:  # fmt: skip
    """Sentences from the statistics, each claiming only what its test supports: thresholds that
    survive a Bonferroni-corrected Mann-Whitney test, parameters with no detectable effect on the
    objective (Kruskal-Wallis), the best combination, and significant Spearman correlations."""
    optimization = optimization or optimize(parameters, metrics, objective)
    correlation_list = correlation_list if correlation_list is not None else correlations(parameters, metrics)
    swept = [p for p in parameters if len(np.unique(_finite(parameters[p]))) > 1]
    objective_metric = objective.quality_metric if objective.weights else objective.metric
    out: list[Insight] = []
    if optimization.best_combination is not None:
        best = optimization.best_combination
        settings = ", ".join(f"{label(p)} {format_value(v)}" for p, v in best.parameters.items() if p in swept)
        if best.ci_low is not None:
            ci = f"95% CI {number_text(best.ci_low, 1)}–{number_text(best.ci_high, 1)}, n = {best.n}"
        else:
            ci = f"n = {best.n}: {best.ci_note}"
        word = "highest" if optimization.maximize else "lowest"
        sentence = (f"The {word} mean {label(optimization.objective)}, {format_amount(optimization.objective, best.mean)} "
                    f"({ci}), came at {settings or 'the only setting'}.")  # fmt: skip
        out.append(Insight("best", sentence, metric=optimization.objective, numbers=asdict(best)))

    # Thresholds: the objective's first, then latency and cost, then at most two of the other
    # figures (the largest effects relative to the figure's spread).
    def splits_of(metric: str) -> list[Split]:
        if metric not in metrics or metric in NEUTRAL or not np.isfinite(metrics[metric]).any():
            return []
        found = [best_split(name, parameters[name], metric, metrics[metric]) for name in swept]
        spread = float(np.nanstd(metrics[metric])) or 1.0
        return sorted((s for s in found if s is not None), key=lambda s: -abs(s.difference) / spread)

    others = [
        s for m in metrics if m not in (objective_metric, "latency_ms", "cost_usd", "ttft_ms") for s in splits_of(m)
    ]
    others.sort(key=lambda s: -abs(s.difference) / (float(np.nanstd(metrics[s.metric])) or 1.0))
    splits = [*splits_of(objective_metric), *splits_of("latency_ms"), *splits_of("cost_usd"), *others[:2]]
    for split in splits[: max(0, limit - 4)]:
        out.append(Insight("threshold", _threshold_sentence(split), split.parameter, split.metric, asdict(split)))
    if objective_metric in metrics and np.isfinite(metrics[objective_metric]).any():
        for name in swept:
            tested = effect(name, parameters[name], objective_metric, metrics[objective_metric])
            if tested.kruskal_p is not None and not tested.significant:
                out.append(Insight(
                    "no_effect",
                    f"{label(name)} shows no significant effect on {label(objective_metric)} "
                    f"(Kruskal-Wallis {format_p(tested.kruskal_p)}, n = {tested.n}).",
                    name, objective_metric, {"kruskal_h": tested.kruskal_h, "kruskal_p": tested.kruskal_p, "n": tested.n},
                ))  # fmt: skip
    strongest: dict[str, Correlation] = {}
    for c in correlation_list:
        relevant = c.metric in (objective_metric, "latency_ms", "cost_usd") and c.strength in ("strong", "moderate")
        if not (c.significant and relevant):
            continue
        if c.parameter not in strongest or abs(c.spearman_rho) > abs(strongest[c.parameter].spearman_rho):
            strongest[c.parameter] = c
    for c in strongest.values():
        sign = "rises" if c.spearman_rho > 0 else "falls"
        out.append(Insight(
            "correlation",
            f"{label(c.metric).capitalize()} {sign} with {label(c.parameter)} ({c.strength} correlation: "
            f"Spearman ρ = {c.spearman_rho:.2f}, {format_p(c.spearman_p)}, n = {c.n}).",
            c.parameter, c.metric, asdict(c),
        ))  # fmt: skip
    return out[:limit]
