"""What to probe next: a pure function of the probes judged so far, so a search resumed after a lost worker
asks for exactly the probe it lost.

Ramp: from the start level, double until a level misses the SLO (or shows saturation), or the maximum level
meets it. When the start level already misses, halve until one meets it. Bisect: probe the middle of the
bracket [highest level that met it, lowest level that did not] until the bracket is narrower than the
tolerance (as a share of its low end; for concurrency, until the two ends are neighbours).

Trials: every level gets `repetitions` trials; a level whose pooled verdict is undecided gets up to
`max_extra_trials` more ("extend"); still undecided, it counts as missing the SLO (the page lists it). A level
where the client could not keep up is tried again; if it stays client-limited the search stops there.
"""

from dataclasses import dataclass

PASS, FAIL, SATURATED, UNDECIDED, MORE, CLIENT = "pass", "fail", "saturated", "undecided", "more", "client"
MISSED = {FAIL, SATURATED, UNDECIDED}
# Closed loop: a level at least PLATEAU_LEVEL × a lower level that met the SLO, whose throughput is below
# PLATEAU_GAIN × that level's, shows a saturated server even if the SLO holds.
PLATEAU_LEVEL, PLATEAU_GAIN = 1.5, 1.1
MIN_SHARE_OF_START = 1 / 64  # the ramp down stops below this share of the start level


@dataclass(frozen=True)
class SearchConfig:
    start: float
    max_level: float
    tolerance: float
    integer: bool  # concurrency: whole levels
    repetitions: int = 1
    max_extra_trials: int = 2
    max_probes: int = 24


@dataclass(frozen=True)
class Judged:
    level: float
    trial: int
    phase: str
    verdict: str  # PASS, FAIL, SATURATED, UNDECIDED, MORE (another trial wanted) or CLIENT


@dataclass(frozen=True)
class Probe:
    level: float
    trial: int
    phase: str  # ramp, bisect or extend


@dataclass(frozen=True)
class Done:
    low: float | None  # the highest level that met the SLO (None: none did)
    high: float | None  # the lowest level that did not (None: every level probed met it)
    reason: str  # bracket | budget | max_level | below_start | client
    nonmonotone: tuple[float, ...] = ()  # levels that met the SLO above one that did not


def level_verdicts(probes: list[Judged]) -> dict[float, str]:
    """Each level's latest verdict (MORE while its trials are not all in)."""
    verdicts: dict[float, str] = {}
    for probe in probes:
        verdicts[probe.level] = probe.verdict
    return verdicts


def trial_verdict(cfg: SearchConfig, trials_done: int, pooled: str, client_limited: bool) -> str:
    """A level's verdict after `trials_done` trials whose pooled judgement is `pooled` (PASS, FAIL, SATURATED
    or UNDECIDED): MORE while planned or extra trials remain and the answer is not in."""
    if trials_done < cfg.repetitions:
        return MORE
    if client_limited:
        return MORE if trials_done < cfg.repetitions + cfg.max_extra_trials else CLIENT
    if pooled == UNDECIDED and trials_done < cfg.repetitions + cfg.max_extra_trials:
        return MORE
    return pooled


def bracket(verdicts: dict[float, str]) -> tuple[float | None, float | None, tuple[float, ...]]:
    missed = [level for level, v in verdicts.items() if v in MISSED]
    high = min(missed) if missed else None
    passed = [level for level, v in verdicts.items() if v == PASS]
    below = [level for level in passed if high is None or level < high]
    above = tuple(sorted(level for level in passed if high is not None and level > high))
    return (max(below) if below else None), high, above


def _round(cfg: SearchConfig, level: float) -> float:
    return float(max(1, round(level))) if cfg.integer else float(f"{level:.4g}")


def next_step(cfg: SearchConfig, probes: list[Judged]) -> Probe | Done:
    """The next probe to run, or the end of the search."""
    if probes and probes[-1].verdict == MORE:
        last = probes[-1]
        trial = last.trial + 1
        return Probe(last.level, trial, "extend" if trial >= cfg.repetitions else last.phase)
    verdicts = level_verdicts(probes)
    low, high, above = bracket(verdicts)
    if CLIENT in verdicts.values():
        return Done(low, high, "client", above)
    if len(probes) >= cfg.max_probes:
        return Done(low, high, "budget", above)
    if high is None:  # nothing missed yet: ramp up
        if low is not None and low >= cfg.max_level:
            return Done(low, None, "max_level", above)
        level = cfg.start if low is None else min(cfg.max_level, _round(cfg, low * 2))
        return Probe(level, 0, "ramp")
    if low is None:  # the lowest level probed missed: ramp down
        level = _round(cfg, high / 2)
        if level >= high or level < cfg.start * MIN_SHARE_OF_START:
            return Done(None, high, "below_start", above)
        return Probe(level, 0, "ramp")
    if high - low <= cfg.tolerance * low or (cfg.integer and high - low <= 1):
        return Done(low, high, "bracket", above)
    level = _round(cfg, (low + high) / 2)
    if not low < level < high:
        return Done(low, high, "bracket", above)
    return Probe(level, 0, "bisect")


def plateau(level: float, throughput_rps: float | None, lower: list[tuple[float, float]]) -> str:
    """Closed loop: why this level's throughput shows a saturated server, given (level, throughput) of lower
    levels that met the SLO; '' when it does not."""
    if throughput_rps is None:
        return ""
    for lower_level, lower_rps in sorted(lower):
        if level >= PLATEAU_LEVEL * lower_level and throughput_rps < PLATEAU_GAIN * lower_rps:
            return (f"throughput stopped growing: {throughput_rps:.3g} req/s at {level:g} concurrent requests, "
                    f"{lower_rps:.3g} req/s at {lower_level:g}")  # fmt: skip
    return ""
