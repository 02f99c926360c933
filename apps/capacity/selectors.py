"""Read-side helpers the pages and the API share: the answer in words, the figures at capacity, the probes
table in words, the undecided note, and the comparison of two searches."""

import math
from typing import Any

from apps.batches.trials import compare_trials
from apps.capacity.engine.slo import METRICS, describe_slo
from apps.capacity.models import CapacityProbe, CapacitySearch
from llmbench.humanize import number_text

PHASES = {"ramp": "ramp", "bisect": "bisect", "extend": "extra trial", "done": "done"}
# Verdict -> the colour of its dot on the charts and of its badge in the table.
VERDICT_COLOURS = {
    CapacityProbe.Verdict.PASS: "#2f9e6e",
    CapacityProbe.Verdict.FAIL: "#c23b3b",
    CapacityProbe.Verdict.SATURATED: "#b2458f",
    CapacityProbe.Verdict.UNDECIDED: "#9a9a9a",
    CapacityProbe.Verdict.MORE: "#3b6fd8",
    CapacityProbe.Verdict.CLIENT_LIMITED: "#8c564b",
}
OVERLAP_TEXT = "the brackets overlap: the difference is within the search tolerance"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def level_number(value: Any) -> str:
    """A level as the search's sentences show it: 41.8, 24, 2.5, 0.75 (no trailing zeros); a dash when missing."""
    number = _number(value)
    if number is None:
        return "–"
    digits = 1 if abs(number) >= 10 else 2 if abs(number) >= 1 else 3
    text = f"{number:,.{digits}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def level_text(value: Any, unit: str) -> str:
    """A level with its unit: "41.8 req/s", "24 concurrent requests"."""
    return f"{level_number(value)} {unit}"


def bracket_text(low: Any, high: Any) -> str:
    """The bracket as "[40.1, 43.5]"; an open end is a dash."""
    return f"[{level_number(low)}, {level_number(high)}]"


def cost_text(search: CapacitySearch) -> str:
    """The cost as "$0.37 per 1M output tokens", or why there is none."""
    result = search.result or {}
    cost = _number(result.get("cost_per_1m_output_usd", search.cost_per_1m_output_usd))
    if cost is not None:
        return f"${number_text(cost, 2)} per 1M output tokens"
    basis = result.get("cost_basis")
    if isinstance(basis, str) and basis and basis[:1].islower():  # the runner says why there is no cost
        return f"no cost: {basis}"
    if search.hardware_id is None:
        return "no cost: no hardware was chosen"
    if search.hardware.hourly_cost_usd is None:
        return "no cost: no hourly cost on the hardware"
    return "no cost known"


def answer_text(search: CapacitySearch) -> str:
    """The answer in one sentence, e.g. "Capacity 41.8 req/s [40.1, 43.5] at p95 TTFT ≤ 500 ms — $0.37 per 1M
    output tokens"; '' until the search has one."""
    result = search.result or {}
    capacity = _number(result.get("capacity", search.capacity))
    slo = describe_slo(search.slo)
    if capacity is None:
        if search.status == "completed":
            note = str(result.get("note") or "even the lowest level probed missed the SLO.")
            return f"No capacity within {slo}: {note[:1].lower()}{note[1:]}"
        return ""
    unit = result.get("unit") or search.unit
    low, high = result.get("low", search.capacity_low), result.get("high", search.capacity_high)
    if high is None:
        sentence = f"Capacity at least {level_text(capacity, unit)} (the highest level probed still met the SLO)"
    else:
        sentence = f"Capacity {level_text(capacity, unit)} {bracket_text(low, high)}"
    return f"{sentence} at {slo} — {cost_text(search)}"


def progress_text(state: dict) -> str:
    """Where the search stands before it has an answer, in words."""
    low, high, unit = state["bracket"]["low"], state["bracket"]["high"], state["unit"]
    used = f"{state['probes_used']} of at most {state['max_probes']} probes used"
    if state["status"] == "pending":
        return f"Not started yet; {used}."
    if low is not None and high is not None:
        where = f"So far the capacity lies between {level_number(low)} and {level_text(high, unit)}"
    elif low is not None:
        where = f"So far {level_text(low, unit)} meets the objective and no higher level has missed it"
    elif high is not None:
        where = f"So far {level_text(high, unit)} misses the objective and no lower level has met it"
    else:
        where = "No level judged yet"
    return f"{where}; {used}."


def figures_at_capacity(search: CapacitySearch) -> list[tuple[str, str]]:
    """(words, value) of the figures at capacity that the result holds."""
    result = search.result or {}
    rows = [
        ("Requests per second at capacity", "capacity_rps", "req/s"),
        ("Goodput (requests meeting the SLO per second)", "goodput_rps", "req/s"),
        ("Output tokens per second", "output_tps", "tok/s"),
        ("Output tokens per second per GPU", "output_tps_per_gpu", "tok/s"),
        ("Output tokens per second per user", "output_tps_per_user", "tok/s"),
        ("Requests in flight at capacity (implied concurrency)", "implied_concurrency", "requests"),
    ]
    shown = []
    for words, key, unit in rows:
        value = _number(result.get(key))
        if value is not None:
            shown.append((words, f"{number_text(value)} {unit}".strip()))
    intervals = result.get("interval")
    trials = result.get("trials_at_capacity")
    if isinstance(intervals, dict):  # across the trials at capacity: figure -> [low, high] or None
        for words, key, unit in rows[1:3]:
            interval = intervals.get(key)
            if isinstance(interval, list | tuple) and len(interval) == 2:
                many = f" over {trials} trials" if isinstance(trials, int) else ""
                shown.append((f"{words.split(' (')[0]}, 95% interval{many}",
                              f"{number_text(interval[0])} to {number_text(interval[1])} {unit}"))  # fmt: skip
    cost, basis = _number(result.get("cost_per_1m_output_usd")), result.get("cost_basis")
    if cost is not None:
        shown.append(("Cost per 1M output tokens", f"${number_text(cost, 2)}" + (f" ({basis})" if basis else "")))
    probes = result.get("probes_used")
    if isinstance(probes, int):
        shown.append(("Probes used", f"{probes} of {search.max_probes}"))
    wall = _number(result.get("wall_time_s"))
    if wall is not None:
        shown.append(("Time the search took", f"{number_text(wall, 0)} s"))
    return shown


def share_text(objective: dict) -> str:
    """A share with its interval, "96.2% [94.1, 97.6]", from shares between 0 and 1."""
    share, low, high = (_number(objective.get(k)) for k in ("share", "low", "high"))
    if share is None:
        return "–"
    text = f"{share * 100:.1f}%"
    if low is not None and high is not None:
        text += f" [{low * 100:.1f}, {high * 100:.1f}]"
    return text


def _objectives(judgement: dict) -> list[dict]:
    objectives = judgement.get("objectives") if isinstance(judgement, dict) else None
    if isinstance(objectives, dict):
        objectives = [{"label": key, **value} for key, value in objectives.items() if isinstance(value, dict)]
    return [o for o in objectives or [] if isinstance(o, dict)]


def saturation_reasons(judgement: dict) -> list[str]:
    """The saturation signals the judge saw, as words."""
    signals = judgement.get("saturation") if isinstance(judgement, dict) else None
    if isinstance(signals, dict):
        reasons = signals.get("reasons")
        if isinstance(reasons, list):
            return [str(r) for r in reasons]
        return [str(v) if isinstance(v, str) else k.replace("_", " ") for k, v in signals.items() if v]
    if isinstance(signals, list):
        return [str(s) for s in signals]
    return [signals] if isinstance(signals, str) and signals else []


def limited_by_text(result: dict) -> str:
    """What stopped the capacity from being higher, in words ("p95 TTFT ≤ 500 ms; requests in flight kept …")."""
    limited = result.get("limited_by")
    if isinstance(limited, list):
        return "; ".join(str(item) for item in limited if item)
    return limited if isinstance(limited, str) else ""


def probe_rows(state: dict) -> list[dict]:
    """The probes of a progress payload as the table shows them."""
    rows = []
    for probe in state["probes"]:
        judgement = probe.get("judgement") or {}
        rows.append({
            **probe,
            "number": probe["index"] + 1,
            "level_text": level_number(probe["level"]),
            "trial_number": probe["trial"] + 1,
            "phase_label": PHASES.get(probe["phase"], probe["phase"]),
            "colour": VERDICT_COLOURS.get(probe["verdict"], "#6b6b6b"),
            "objectives": [{"label": o.get("label", ""), "share": share_text(o), "verdict": o.get("verdict", "")}
                           for o in _objectives(judgement)],
            "saturation": saturation_reasons(judgement),
        })  # fmt: skip
    return rows


def undecided_notes(state: dict) -> list[str]:
    """Per undecided level: "Probes at 44 req/s stayed undecided after 3 trials; they count as missing the SLO"."""
    levels: dict[float, int] = {}
    for probe in state["probes"]:
        levels.setdefault(probe["level"], 0)
        levels[probe["level"]] += 1
    undecided = sorted({p["level"] for p in state["probes"] if p["verdict"] == CapacityProbe.Verdict.UNDECIDED})
    notes = []
    for level in undecided:
        trials = levels[level]
        notes.append(f"Probes at {level_text(level, state['unit'])} stayed undecided after {trials} "
                     f"trial{'s' if trials != 1 else ''}; they count as missing the SLO.")  # fmt: skip
    return notes


def chart_metric(slo: dict) -> tuple[str, str, float | None]:
    """The figure the main chart plots (the SLO's first latency objective, else p95 TTFT): its figures key, the
    axis title and the threshold."""
    objectives = slo.get("objectives") or []
    if not objectives:
        return "ttft_p95_ms", "p95 TTFT (ms)", None
    first = objectives[0]
    short = METRICS[first["metric"]][0]
    name = first["metric"].removesuffix("_ms")
    return f"{name}_p{first['percentile']}_ms", f"p{first['percentile']} {short} (ms)", first["max_ms"]


# --- comparing two searches ---------------------------------------------------------------------------------


def _bracket(search: CapacitySearch) -> tuple[float | None, float | None]:
    result = search.result or {}
    low = _number(result.get("low", search.capacity_low))
    high = _number(result.get("high", search.capacity_high))
    return low, high


def _capacity_level(search: CapacitySearch) -> float | None:
    """The probed level the capacity was measured at: the highest level that met the SLO."""
    low, _ = _bracket(search)
    return low if low is not None else _number((search.result or {}).get("capacity", search.capacity))


def goodput_trials(search: CapacitySearch) -> list[float]:
    """Goodput (req/s) of each trial at the search's capacity level."""
    level = _capacity_level(search)
    if level is None:
        return []
    values = []
    for probe in search.probes.all():
        goodput = _number((probe.figures or {}).get("goodput_rps"))
        if goodput is not None and math.isclose(probe.level, level, rel_tol=1e-9, abs_tol=1e-9):
            values.append(goodput)
    return values


def search_summary(search: CapacitySearch) -> dict:
    """One side of a comparison: the search's capacity, bracket, goodput and cost."""
    low, high = _bracket(search)
    result = search.result or {}
    capacity = _number(result.get("capacity", search.capacity))
    return {
        "id": search.pk, "name": search.name, "status": search.status, "space": search.space, "unit": search.unit,
        "slo_text": describe_slo(search.slo), "capacity": capacity,
        "low": low, "high": high, "goodput_rps": _number(result.get("goodput_rps", search.goodput_rps)),
        "cost_per_1m_output_usd": _number(result.get("cost_per_1m_output_usd", search.cost_per_1m_output_usd)),
        "answer": answer_text(search), "is_simulated": search.is_simulated,
        "capacity_text": "" if capacity is None else f"{level_text(capacity, search.unit)} {bracket_text(low, high)}",
    }  # fmt: skip


def compare_searches(a: CapacitySearch, b: CapacitySearch) -> dict:
    """The two capacities side by side, whether their brackets overlap (in words) and, when both have 2 or more
    trials at their capacity level, Welch's t-test of goodput at capacity across trials."""
    out: dict[str, Any] = {"a": search_summary(a), "b": search_summary(b), "overlap": None, "goodput_test": None}
    (a_low, a_high), (b_low, b_high) = _bracket(a), _bracket(b)
    if a.space != b.space:
        out["overlap_text"] = (f"Not comparable: A searched {a.get_space_display().lower()} and B "
                               f"{b.get_space_display().lower()}.")  # fmt: skip
    elif out["a"]["capacity"] is None or out["b"]["capacity"] is None:
        missing = [name for name, side in (("A", out["a"]), ("B", out["b"])) if side["capacity"] is None]
        out["overlap_text"] = f"{' and '.join(missing)} {'has' if len(missing) == 1 else 'have'} no capacity yet."
    else:
        # An open top end (the highest level probed still met the SLO) reaches past every level.
        a_top = math.inf if a_high is None else a_high
        b_top = math.inf if b_high is None else b_high
        a_bottom, b_bottom = a_low or 0.0, b_low or 0.0
        if a_bottom > b_top or (a_bottom >= b_top and a_top > b_top):
            out["overlap"], out["overlap_text"] = False, "A's bracket lies above B's."
        elif b_bottom > a_top or (b_bottom >= a_top and b_top > a_top):
            out["overlap"], out["overlap_text"] = False, "B's bracket lies above A's."
        else:
            out["overlap"], out["overlap_text"] = True, OVERLAP_TEXT[0].upper() + OVERLAP_TEXT[1:] + "."
    trials_a, trials_b = goodput_trials(a), goodput_trials(b)
    if len(trials_a) >= 2 and len(trials_b) >= 2:
        out["goodput_test"] = compare_trials(trials_a, trials_b, label_a="A", label_b="B", unit="req/s")
    else:
        out["goodput_test_text"] = (f"No test of goodput: each search needs 2 or more trials at its capacity level "
                                    f"(A has {len(trials_a)}, B has {len(trials_b)}).")  # fmt: skip
    return out
