"""Repeated trials of a load sweep: each level run k times (LoadSweep.trials), and what the trials say together.

For each level and headline figure of a trial's run (the stored summary's steady-window figures, as the
steps table shows them): the mean across the finished trials, their sample standard deviation, and the 95%
Student t interval of the mean with k − 1 degrees of freedom (scipy.stats.t.interval on the trial values).
Every figure here is a latency or a throughput, which cannot be below 0: an interval reaching below 0 is
clipped there and says so (`clipped`). One trial has no interval ("one trial"); trials that all gave the
same value have no spread to estimate one from. Only completed steps count: a cancelled step's run is cut
short and not comparable. `compare_trials` compares two sets of trial figures (Welch's t-test), for the
capacity app. Definitions: docs/metrics.md, "Repeated trials".
"""

import math
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from apps.batches.analysis import format_p
from apps.batches.models import LoadSweepStep, Status
from llmbench.humanize import number_text

CONFIDENCE = 0.95
ONE_TRIAL = "one trial"
NO_TRIAL = "no finished trial"
NOT_MEASURED = "not in the trials' runs"  # e.g. ITL from a source without token timings


@dataclass(frozen=True)
class Figure:
    """A headline figure of a trial's run: its key (with its unit), the words a page shows, its unit and the
    decimals a page prints."""

    key: str
    label: str
    unit: str
    digits: int
    read: Callable  # RunSummary -> float | None


FIGURES = (
    Figure("ttft_p50_ms", "TTFT p50", "ms", 1, lambda s: s.stat("ttft_ms", "p50")),
    Figure("ttft_p95_ms", "TTFT p95", "ms", 1, lambda s: s.stat("ttft_ms", "p95")),
    Figure("ttft_p99_ms", "TTFT p99", "ms", 1, lambda s: s.stat("ttft_ms", "p99")),
    Figure("tpot_p95_ms", "TPOT p95", "ms", 1, lambda s: s.stat("tpot_ms", "p95")),
    Figure("itl_p95_ms", "ITL p95", "ms", 1, lambda s: s.stat("itl_ms", "p95")),
    Figure("e2e_p95_ms", "E2E latency p95", "ms", 1, lambda s: s.stat("e2e_ms", "p95")),
    Figure("request_throughput_rps", "Request throughput", "req/s", 2, lambda s: s.request_throughput_rps),
    Figure("output_tokens_per_s", "Output tokens/s", "tokens/s", 1, lambda s: s.output_token_throughput_tps),
    Figure("goodput_rps", "Goodput", "req/s", 2, lambda s: s.goodput_rps),  # only when an SLO is set on the runs
)


@dataclass
class TrialFigures:
    """One figure at one level across its trials: k values, their mean and sd, and the 95% t interval."""

    k: int
    mean: float | None
    sd: float | None
    low: float | None
    high: float | None
    clipped: bool = False  # the t interval reached below 0 and was cut at 0
    note: str = ""  # why there is no interval
    trials: list[dict] = field(default_factory=list)  # {"trial", "value", "run_id"} of each finished trial


def t_intervals(groups: list[Iterable[float]], *, floor: float | None = 0.0,
                confidence: float = CONFIDENCE) -> list[TrialFigures]:  # fmt: skip
    """For each group of trial values: mean, sample sd (ddof=1) and the Student t interval of the mean with
    k − 1 degrees of freedom, cut at `floor` (0 for latencies and throughputs; None: not cut). Every group at
    once (rows of a NaN-padded table, one scipy.stats.t.interval call): the live payload recomputes them
    each second while the load generator runs in the same process."""
    rows = [[v for v in g if v is not None and math.isfinite(v)] for g in groups]
    table = np.full((len(rows), max((len(r) for r in rows), default=0) or 1), np.nan)
    for i, row in enumerate(rows):
        table[i, : len(row)] = row
    k = np.array([len(r) for r in rows], dtype=float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the mean of no trial, the sd of one: NaN, and said so
        means, sds = np.nanmean(table, axis=1), np.nanstd(table, axis=1, ddof=1)
    spread = (k >= 2) & (sds > 0)
    lows, highs = np.full(len(rows), np.nan), np.full(len(rows), np.nan)
    if spread.any():
        lows[spread], highs[spread] = stats.t.interval(confidence, k[spread] - 1, loc=means[spread],
                                                       scale=sds[spread] / np.sqrt(k[spread]))  # fmt: skip
    out = []
    for n, mean, sd, low, high in zip(k.astype(int).tolist(), means.tolist(), sds.tolist(), lows.tolist(),
                                      highs.tolist(), strict=True):  # fmt: skip
        if n < 2 or sd == 0:
            note = NO_TRIAL if n == 0 else ONE_TRIAL if n == 1 else f"no spread: all {n} trials equal"
            out.append(TrialFigures(n, mean if n else None, sd if n > 1 else None, None, None, note=note))
            continue
        clipped = floor is not None and low < floor
        out.append(TrialFigures(n, mean, sd, floor if clipped else low, high, clipped=clipped))
    return out


def t_interval(values: Iterable[float], *, floor: float | None = 0.0, confidence: float = CONFIDENCE) -> TrialFigures:
    """The figures of one group of trial values (see t_intervals)."""
    return t_intervals([values], floor=floor, confidence=confidence)[0]


def _finished_summary(step: LoadSweepStep):
    if step.status != Status.COMPLETED or not step.run_id:
        return None
    return getattr(step.run, "summary", None)


def level_trials(steps: Iterable[LoadSweepStep], *, confidence: float = CONFIDENCE) -> dict:
    """The sweep's figures across trials, level by level in step order, as plain JSON values: what the
    sweep page, the API payload (progress_payload) and the exports show. `steps` should come with
    `select_related("run__summary")`. Goodput is listed only when a finished trial has one (an SLO is set); a
    chart is drawn only for a figure some trial has."""
    by_level: dict[float, list[LoadSweepStep]] = {}
    for step in sorted(steps, key=lambda s: s.index):
        by_level.setdefault(step.level, []).append(step)
    levels, cells = [], []
    for level, members in by_level.items():
        finished = [(s, summary) for s in members if (summary := _finished_summary(s)) is not None]
        entry = {"level": level, "trials_planned": len(members), "trials_finished": len(finished), "figures": {}}
        for figure in FIGURES:
            trials = [{"trial": s.trial, "value": value, "run_id": s.run_id} for s, summary in finished
                      if (value := figure.read(summary)) is not None and math.isfinite(value)]  # fmt: skip
            cells.append((entry, figure.key, trials, bool(finished)))
        levels.append(entry)
    results = t_intervals([[t["value"] for t in trials] for _, _, trials, _ in cells], confidence=confidence)
    shown = set()
    for (entry, key, trials, ran), result in zip(cells, results, strict=True):
        result.trials = trials
        if ran and not trials:
            result.note = NOT_MEASURED
        entry["figures"][key] = dict(vars(result))  # not asdict: its deep copy of the trials is most of the time
        if trials:
            shown.add(key)
    keys = [f.key for f in FIGURES if f.key in shown or f.key != "goodput_rps"]
    for entry in levels:
        entry["figures"] = {key: entry["figures"][key] for key in keys}
    return {
        "confidence": confidence,
        "repeated": any(entry["trials_planned"] > 1 for entry in levels),
        "figures": [
            {"key": f.key, "label": f.label, "unit": f.unit, "digits": f.digits} for f in FIGURES if f.key in keys
        ],
        "levels": levels,
    }


# --- comparing two sets of trials ---------------------------------------------------------------------


def compare_trials(a: list[float], b: list[float], *, label_a: str = "A", label_b: str = "B", unit: str = "",
                   confidence: float = CONFIDENCE) -> dict:  # fmt: skip
    """Welch's t-test of two sets of trial figures (scipy.stats.ttest_ind, equal_var=False): both means,
    the difference a − b with its interval on the Welch–Satterthwaite degrees of freedom, the two-sided
    p-value and a sentence. Each side needs 2 trials; no test when neither side varies."""
    x = np.asarray([v for v in a if v is not None and math.isfinite(v)], dtype=float)
    y = np.asarray([v for v in b if v is not None and math.isfinite(v)], dtype=float)
    out = {
        "n_a": len(x), "n_b": len(y), "mean_a": float(np.mean(x)) if len(x) else None,
        "mean_b": float(np.mean(y)) if len(y) else None, "difference": None, "ci_low": None, "ci_high": None,
        "df": None, "t": None, "p_value": None, "confidence": confidence, "significant": False,
    }  # fmt: skip
    if len(x) and len(y):
        out["difference"] = out["mean_a"] - out["mean_b"]
    if len(x) < 2 or len(y) < 2:
        out["verdict"] = (f"Not enough trials to compare: each side needs 2 or more ({label_a} has {len(x)}, "
                          f"{label_b} has {len(y)}).")  # fmt: skip
        return out
    if np.ptp(x) == 0 and np.ptp(y) == 0:
        out["verdict"] = (f"No test: every trial of {label_a} gave {number_text(x[0])} and every trial of {label_b} "
                          f"gave {number_text(y[0])}, so there is no spread to test against.")  # fmt: skip
        return out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = stats.ttest_ind(x, y, equal_var=False)
        interval = result.confidence_interval(confidence)
    out.update(df=float(result.df), t=float(result.statistic), p_value=float(result.pvalue),
               ci_low=float(interval.low), ci_high=float(interval.high))  # fmt: skip
    out["significant"] = out["p_value"] < 1 - confidence
    amount = f"{number_text(abs(out['difference']))}{f' {unit}' if unit else ''}"
    ci = (f"{round(confidence * 100)}% CI of {label_a} − {label_b}: {number_text(out['ci_low'])} to "
          f"{number_text(out['ci_high'])}; Welch's t-test {format_p(out['p_value'])}, n = {len(x)} and {len(y)}")  # fmt: skip
    if out["significant"]:
        word = "higher" if out["difference"] > 0 else "lower"
        out["verdict"] = f"{label_a} is {word} than {label_b} by {amount} ({ci})."
    else:
        out["verdict"] = (f"No significant difference between {label_a} and {label_b}: the trials differ by "
                          f"{amount} on average ({ci}).")  # fmt: skip
    return out
