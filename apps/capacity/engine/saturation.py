"""Signs, within one probe, that the server (not the SLO) set the limit: requests pile up.

* In flight growing (open loop): the number of requests in flight, sampled through the dispatch window after the
  first requests had time to finish, is clearly higher in its last third than in its first. Below capacity it
  is flat (Little's law: rate × time in system); past it the queue grows for as long as the probe lasts.
* TTFT rising with time: a strong rank correlation of TTFT with send time (Spearman ρ ≥ 0.5, p < 0.001) and
  a median TTFT in the last third at least 1.5× the first third's (and 20 ms more): queueing, not noise.

Across probes the runner adds a third sign for closed loop: doubling the concurrency no longer raises the
throughput (engine.search has the rule).
"""

import numpy as np
from scipy.stats import spearmanr

from apps.capacity.engine.judge import judged_window
from apps.hardware.stats import SampleColumns

GROWTH_RATIO, GROWTH_MIN = 1.5, 2.0
RHO_MIN, P_MAX, RISE_RATIO, RISE_MIN_MS = 0.5, 1e-3, 1.5, 20.0


def _thirds(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    third = len(values) // 3
    return values[:third], values[-third:]


def saturation_signals(columns: SampleColumns, *, open_loop: bool) -> list[str]:
    """The signs of saturation in a probe's samples, in words; [] when there are none."""
    columns = judged_window(columns)
    reasons = []
    start, e2e = columns.start_offset_ms, columns.e2e_ms
    timed = np.isfinite(start)
    if open_loop and timed.sum() >= 30:
        # A failed request leaves when it failed (its e2e), or counts as gone at once when the source did not say.
        ends = start + np.where(np.isfinite(e2e), e2e, 0.0)
        first_send, last_send = float(np.min(start[timed])), float(np.max(start[timed]))
        settle = float(np.nanmedian(e2e[timed][: max(5, int(timed.sum()) // 5)])) if np.isfinite(e2e).any() else 0.0
        if last_send - (first_send + settle) > 0:
            times = np.linspace(first_send + settle, last_send, 60)
            in_flight = np.array([np.count_nonzero((start[timed] <= t) & (ends[timed] > t)) for t in times])
            early, late = _thirds(in_flight)
            if late.mean() >= GROWTH_RATIO * early.mean() + GROWTH_MIN:
                reasons.append(
                    f"requests in flight kept growing ({early.mean():.0f} early in the probe, {late.mean():.0f} late)"
                )
    ok = columns.ok & np.isfinite(columns.ttft_ms) & timed
    if ok.sum() >= 30 and np.ptp(columns.ttft_ms[ok]) > 0:  # a constant TTFT has no trend (nor a rank correlation)
        order = np.argsort(start[ok], kind="stable")
        ttft = columns.ttft_ms[ok][order]
        rho, p = spearmanr(np.arange(len(ttft)), ttft)
        early, late = _thirds(ttft)
        early_ms, late_ms = float(np.median(early)), float(np.median(late))
        if rho >= RHO_MIN and p < P_MAX and late_ms >= RISE_RATIO * early_ms and late_ms - early_ms >= RISE_MIN_MS:
            reasons.append(f"time to first token rose through the probe (median {early_ms:.0f} ms early, "
                           f"{late_ms:.0f} ms late)")  # fmt: skip
    return reasons
