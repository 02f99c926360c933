"""What a workload would send, summarised for the editor and the API (design §4, `workload_preview`).

The figures come from the first `sample` sessions of a RequestPlan. Input lengths are the plan's requested lengths
where it has them (first turns), otherwise counted: with the tokenizer when there is one, else characters / 4.
A later turn's input is the whole history, which holds the server's real responses, so the preview assumes each
response is as long as its `max_tokens` and says so.
"""

import bisect
import math

import numpy as np

from apps.workloads.engine.plan import COMPLETIONS_JOIN, WORDS_PER_TOKEN_ESTIMATE, PlannedSession, RequestPlan
from apps.workloads.engine.tokens import TokenCounter

MAX_BINS = 30
MULTI_TURN_WARNING = (
    "Later turns' inputs include the real responses; their lengths are known only when run. The input figures "
    "assume each response is as long as the output length asked for."
)
ESTIMATED_WARNING = (
    f"No tokenizer and no calibration: prompt lengths are estimated ({WORDS_PER_TOKEN_ESTIMATE:g} words per token, "
    "characters / 4 when counting). Upload the model's tokenizer.json for exact lengths."
)


def preview(plan: RequestPlan, counter: TokenCounter | None, *, sample: int = 500) -> dict:
    """A JSON-able summary of `plan` (see the module docstring); `sample` caps the sessions looked at.

    `prefix_share` is design §3's cache-hit ceiling: tokens of each request already sent as the prefix of an earlier
    request ÷ all input tokens. First turns are compared as text (each request's longest common prefix with any
    earlier one); with a tokenizer that shared text is counted in tokens (`basis` "tokens"; a token either way
    where the shared text ends mid-token), without one the share is of characters (`basis` "characters"). A later
    turn starts with the whole previous request of its session, so it shares at least that previous input.
    """
    sessions = plan.sessions[: max(1, sample)]
    firsts = [_first_text(s) for s in sessions]
    later = [turn.user for s in sessions for turn in s.turns[1:]]
    unknown = [i for i, s in enumerate(sessions) if s.turns[0].requested_input_tokens is None]
    if counter is not None:
        later_tokens = counter.count(later) if later else []
        counted = dict(zip(unknown, counter.count([firsts[i] for i in unknown]) if unknown else [], strict=True))
    else:
        later_tokens = [math.ceil(len(text) / 4) for text in later]
        counted = {i: math.ceil(len(firsts[i]) / 4) for i in unknown}

    inputs, outputs, first_inputs = [], [], []
    shared_later = 0
    later_iter = iter(later_tokens)
    for i, session in enumerate(sessions):
        first = session.turns[0].requested_input_tokens
        current = counted[i] if first is None else first
        first_inputs.append(current)
        inputs.append(current)
        outputs.append(session.turns[0].max_tokens)
        for previous, turn in zip(session.turns, session.turns[1:], strict=False):
            shared_later += current
            current = current + previous.max_tokens + next(later_iter)
            inputs.append(current)
            outputs.append(turn.max_tokens)
    shared_chars = _shared_prefix_chars(firsts)
    if counter is not None:
        tokens_of: dict[str, int] = {}
        shared_first = 0
        for text, n, first in zip(firsts, shared_chars, first_inputs, strict=True):
            head = text[:n]
            if head and head not in tokens_of:
                tokens_of[head] = len(counter.encode(head))
            shared_first += min(tokens_of.get(head, 0), first)
        basis = "tokens"
    else:
        total_chars = sum(len(t) for t in firsts)
        shared_first = sum(shared_chars) / total_chars * sum(first_inputs) if total_chars else 0
        basis = "characters"
    total_inputs = sum(inputs)
    share = (shared_first + shared_later) / total_inputs if total_inputs else 0.0

    turns_per_session = [len(s.turns) for s in plan.sessions]
    warnings = []
    if plan.multi_turn:
        warnings.append(MULTI_TURN_WARNING)
    if plan.length_basis == "estimated":
        warnings.append(ESTIMATED_WARNING)
    result = {
        "requests": plan.request_count,
        "sessions": len(plan.sessions),
        "sampled_sessions": len(sessions),
        "turns": {"mean": float(np.mean(turns_per_session)), "max": int(max(turns_per_session))},
        "input_tokens": _summary(inputs),
        "output_tokens": _summary(outputs),
        "prefix_share": float(min(max(share, 0.0), 1.0)),
        "basis": basis,
        "length_basis": plan.length_basis,
        "skipped": dict(plan.skipped),
        "notes": list(plan.notes),
        "warnings": warnings,
    }
    if plan.offsets_s is not None:
        result["trace"] = _trace_summary(plan)
    return result


def _first_text(session: PlannedSession) -> str:
    """The first request's content as one text: the system message and the user message joined by a blank line
    (exactly the completions prompt; for chat, the messages in the order a server caches them)."""
    parts = [p for p in (session.system, session.turns[0].user) if p]
    return COMPLETIONS_JOIN.join(parts)


def _shared_prefix_chars(texts: list[str]) -> list[int]:
    """For each text, the characters of its longest common prefix with any earlier text.

    As prefix.prefix_share does for token ids: the longest with any earlier text is the longest with one of its
    neighbours in sorted order. Comparing string slices keeps the work in C."""
    seen: list[str] = []
    shared = []
    for text in texts:
        at = bisect.bisect_left(seen, text)
        shared.append(max((_common_prefix(text, other) for other in seen[max(at - 1, 0) : at + 1]), default=0))
        seen.insert(at, text)
    return shared


def _common_prefix(a: str, b: str) -> int:
    """Length of the longest common prefix of two strings, by bisection on slice equality."""
    low, high = 0, min(len(a), len(b))
    if a[:high] == b[:high]:
        return high
    while high - low > 1:  # a[:low] == b[:low] and a[:high] != b[:high]
        mid = (low + high) // 2
        if a[:mid] == b[:mid]:
            low = mid
        else:
            high = mid
    return low


def _summary(values: list[int]) -> dict:
    """Histogram (≤ 30 bins of a whole number of tokens each, [edge, next edge); one bin when every value is the
    same), mean, p50 and p99."""
    data = np.asarray(values, dtype=np.float64)
    low, high = int(data.min()), int(data.max())
    width = max(1, math.ceil((high - low + 1) / MAX_BINS))
    counts, edges = np.histogram(data, bins=np.arange(low, high + width + 1, width))
    return {
        "histogram": {"edges": [int(e) for e in edges], "counts": [int(c) for c in counts]},
        "mean": float(data.mean()),
        "p50": float(np.percentile(data, 50)),
        "p99": float(np.percentile(data, 99)),
    }


def _trace_summary(plan: RequestPlan) -> dict:
    """The replayed span (the last dispatch offset, after speed-up and window) and the mean request rate over it."""
    offsets = [t.offset_s for s in plan.sessions for t in s.turns if t.offset_s is not None]
    duration_s = float(max(offsets)) if offsets else 0.0
    return {
        "duration_s": duration_s,
        "mean_rate_rps": plan.request_count / duration_s if duration_s > 0 else None,
    }
