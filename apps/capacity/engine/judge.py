"""Judging one probe against the SLO, with a confidence interval on each share (Wilson's score interval).

Each trial of a level is reduced to counts (`Tally`): how many requests it judged, how many failed, and per
objective how many requests met the threshold out of how many. The trials of a level pool by adding their
counts, and the level's verdict comes from the pooled counts:

* a latency objective "pX metric ≤ max" asks that a share X/100 of the successful requests meet the threshold.
  It passes when the interval's low end is at least X/100, fails when its high end is below, and is undecided
  otherwise: the runner then runs another trial of the level (never a coin flip);
* ITL is a per-gap figure: its share is over the pooled gaps, but the interval is computed with the number of
  requests behind them (gaps of one request are not independent draws), which is the conservative choice;
* the error budget fails only when the interval's low end is above `max_error_rate` (the evidence says there
  are too many errors); otherwise it passes. A budget of 0 fails on any error;
* `attainment` (when set): the share of all requests, failed ones counted as misses, that meet every latency
  threshold at once (for ITL: the request's mean gap), judged like a latency objective.

Any objective failing makes the level fail; all passing makes it pass; else it is undecided.
"""

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.stats import norm

from apps.capacity.engine.slo import objective_key, objective_label
from apps.hardware.stats import SampleColumns, per_request_tpot_ms, steady_window

PASS, FAIL, UNDECIDED = "pass", "fail", "undecided"


def z_value(confidence: float) -> float:
    return float(norm.ppf(1 - (1 - confidence) / 2))


def wilson(met: int, n: int, confidence: float) -> tuple[float, float]:
    """Wilson's score interval for a share met/n; (0, 1) when nothing was counted."""
    if n <= 0:
        return 0.0, 1.0
    z = z_value(confidence)
    share = met / n
    denominator = 1 + z * z / n
    centre = (share + z * z / (2 * n)) / denominator
    half = z * math.sqrt(share * (1 - share) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def min_requests(slo: dict) -> int:
    """The fewest successful requests with which a probe where every request met the SLO can pass it: a
    share p is only shown above p with n ≥ z²·p/(1−p) (Wilson with no miss), plus a quarter for a few misses."""
    z2 = z_value(slo["confidence"]) ** 2
    shares = [o["percentile"] / 100 for o in slo["objectives"]]
    if slo.get("attainment") is not None:
        shares.append(slo["attainment"])
    if not shares:
        return 20
    return max(20, math.ceil(1.25 * max(z2 * p / (1 - p) for p in shares)))


@dataclass
class Tally:
    """One trial's counts (or several trials' pooled)."""

    requests: int = 0  # judged requests, failed included
    errors: int = 0
    met: dict[str, tuple[int, int]] = field(default_factory=dict)  # objective key -> (met, counted)

    def __add__(self, other: "Tally") -> "Tally":
        keys = set(self.met) | set(other.met)
        met = {k: tuple(a + b for a, b in zip(self.met.get(k, (0, 0)), other.met.get(k, (0, 0)), strict=True))
               for k in keys}  # fmt: skip
        return Tally(self.requests + other.requests, self.errors + other.errors, met)

    def as_dict(self) -> dict:
        return {"requests": self.requests, "errors": self.errors, "met": {k: list(v) for k, v in self.met.items()}}

    @classmethod
    def from_dict(cls, value: dict) -> "Tally":
        return cls(value["requests"], value["errors"], {k: (int(v[0]), int(v[1])) for k, v in value["met"].items()})


def judged_window(columns: SampleColumns) -> SampleColumns:
    """The samples a probe is judged on: the steady window, as the run's own figures (stats.steady_window)."""
    if columns.workload is None:
        return columns
    mask, _ = steady_window(columns.workload.phase)
    return columns.subset(mask)


def _request_gaps(columns: SampleColumns) -> dict[int, np.ndarray]:
    """Each successful request's inter-token gaps by its position (its mean gap when the source kept none)."""
    gaps = {}
    for i in np.flatnonzero(columns.ok):
        g = columns.itl_gaps_ms[i]
        if g is not None and len(g):
            gaps[int(i)] = np.asarray(g, dtype=float)
        elif np.isfinite(columns.mean_itl_ms[i]):
            gaps[int(i)] = np.array([columns.mean_itl_ms[i]])
    return gaps


def tally(columns: SampleColumns, slo: dict) -> Tally:
    """A trial's counts over its judged window."""
    columns = judged_window(columns)
    ok = columns.ok
    ttft, e2e, out = columns.ttft_ms, columns.e2e_ms, columns.output_tokens
    per_request = {"ttft_ms": ttft, "e2e_ms": e2e, "tpot_ms": per_request_tpot_ms(ttft, e2e, out)}
    gaps = _request_gaps(columns)
    mean_itl = np.full(ttft.shape, np.nan)
    for i, g in gaps.items():
        mean_itl[i] = g.mean()
    met: dict[str, tuple[int, int]] = {}
    meets_all = ok.copy()
    for objective in slo["objectives"]:
        metric, limit = objective["metric"], objective["max_ms"]
        if metric == "itl_ms":
            pooled = np.concatenate(list(gaps.values())) if gaps else np.empty(0)
            share = float(np.mean(pooled <= limit)) if pooled.size else 0.0
            met[objective_key(objective)] = (round(share * len(gaps)), len(gaps))
            values = mean_itl
        else:
            values = per_request[metric]
            counted = ok & np.isfinite(values)
            met[objective_key(objective)] = (int(np.count_nonzero(counted & (values <= limit))), int(counted.sum()))
        # A request with no such figure (one output token has no TPOT) does not miss that threshold.
        meets_all &= ~(np.isfinite(values) & (values > limit))
    if slo.get("attainment") is not None:
        met["attainment"] = (int(np.count_nonzero(meets_all)), len(ok))
    return Tally(requests=len(ok), errors=int(np.count_nonzero(~ok)), met=met)


def goodput_share(columns: SampleColumns, slo: dict) -> float | None:
    """The share of a trial's judged requests that succeeded and met every latency threshold."""
    pooled = tally(columns, {**slo, "attainment": 0.5})
    met, n = pooled.met["attainment"] if slo["objectives"] else (pooled.requests - pooled.errors, pooled.requests)
    return met / n if n else None


@dataclass
class ObjectiveVerdict:
    key: str
    label: str
    share: float | None
    low: float
    high: float
    met: int
    n: int
    target: float
    verdict: str
    kind: str = "at least"  # "at least": the share must reach the target; "at most": errors must stay under it

    def as_dict(self) -> dict:
        return dict(vars(self))


def judge(pooled: Tally, slo: dict) -> tuple[str, list[ObjectiveVerdict]]:
    """The level's verdict (PASS / FAIL / UNDECIDED) from its pooled counts, with every objective's."""
    confidence = slo["confidence"]
    rows = []
    for objective in slo["objectives"]:
        key = objective_key(objective)
        rows.append(_at_least(key, objective_label(objective), *pooled.met.get(key, (0, 0)),
                              objective["percentile"] / 100, confidence))  # fmt: skip
    if slo.get("attainment") is not None:
        label = f"{slo['attainment']:.0%} of requests meet every threshold"
        rows.append(
            _at_least("attainment", label, *pooled.met.get("attainment", (0, 0)), slo["attainment"], confidence)
        )
    if slo.get("max_error_rate") is not None:
        budget = slo["max_error_rate"]
        low, high = wilson(pooled.errors, pooled.requests, confidence)
        share = pooled.errors / pooled.requests if pooled.requests else None
        verdict = FAIL if (pooled.errors and low > budget) or (budget == 0 and pooled.errors) else PASS
        if not pooled.requests:
            verdict = UNDECIDED
        label = f"errors ≤ {budget:.1%}".replace(".0%", "%")
        rows.append(ObjectiveVerdict("errors", label, share, low, high, pooled.errors, pooled.requests, budget,
                                     verdict, kind="at most"))  # fmt: skip
    verdicts = {row.verdict for row in rows}
    overall = FAIL if FAIL in verdicts else PASS if verdicts == {PASS} else UNDECIDED
    return overall, rows


def _at_least(key: str, label: str, met: int, n: int, target: float, confidence: float) -> ObjectiveVerdict:
    low, high = wilson(met, n, confidence)
    verdict = PASS if n and low >= target else FAIL if n and high < target else UNDECIDED
    return ObjectiveVerdict(key, label, met / n if n else None, low, high, met, n, target, verdict)
