"""Two measured scores compared on the same items: the paired comparison of the quantization view.

Two runs of one suite answer the same items, so their accuracies are paired proportions: the difference
gets Newcombe's hybrid score interval for paired data (Newcombe 1998, "Improved confidence intervals for
the difference between binomial proportions based on paired data", method 10: the Wilson interval of
each marginal, combined with the correlation φ of the 2×2 table, φ's numerator corrected as in the
paper: ad − bc − n/2 when ad − bc > n/2, 0 up to n/2, ad − bc when negative). The test is McNemar's
exact test, a binomial test of the discordant pairs at p = ½ (scipy). An unpaired interval would be
several times wider: most items are answered alike by both runs.

`measured_pairs` compares stored measured scores (apps.scores.Score): it reads their per-item outcomes only
for pairs not compared before (cached by both scores' versions), so a page of 150 comparisons does not read
the 10 MB of outcomes behind them on every request.
"""

import hashlib
from dataclasses import asdict, dataclass

import numpy as np
from django.core.cache import cache
from scipy.stats import binomtest

from apps.scores.models import Score

PAIRED_CACHE_S = 24 * 3600  # keyed by both scores' versions: a comparison never goes stale, it is only replaced


@dataclass(frozen=True)
class Paired:
    n: int
    a_correct: int
    b_correct: int
    difference_pts: float  # (b − a) accuracy, in points (percent)
    ci_low_pts: float
    ci_high_pts: float
    b_only: int  # right in b, wrong in a
    a_only: int
    mcnemar_p: float
    agreement: float | None  # share of items with the same extracted answer (None without digests)
    flipped: list[int]  # item indices whose correctness differs

    def as_dict(self) -> dict:
        return asdict(self)


def _wilson(successes: int, n: int) -> tuple[float, float]:
    """The Wilson score 95% interval of a proportion (scipy's)."""
    interval = binomtest(successes, n).proportion_ci(confidence_level=0.95, method="wilson")
    return float(interval.low), float(interval.high)


def newcombe_paired_interval(both: int, first_only: int, second_only: int, neither: int) -> tuple[float, float]:
    """95% interval of p1 − p2, where p1 = (both + first_only) / n and p2 = (both + second_only) / n
    (Newcombe 1998, method 10), as fractions clamped to [−1, 1]."""
    n = both + first_only + second_only + neither
    if n == 0:
        raise ValueError("no items to compare")
    p1, p2 = (both + first_only) / n, (both + second_only) / n
    l1, u1 = _wilson(both + first_only, n)
    l2, u2 = _wilson(both + second_only, n)
    margins = (both + first_only) * (second_only + neither) * (both + second_only) * (first_only + neither)
    phi = 0.0
    if margins > 0:
        cross = both * neither - first_only * second_only
        numerator = cross - n / 2 if cross > n / 2 else (0.0 if cross >= 0 else cross)
        phi = numerator / np.sqrt(float(margins))
    d1, d2 = p1 - l1, u2 - p2  # how far each marginal may move down / up
    e1, e2 = u1 - p1, p2 - l2
    difference = p1 - p2
    low = difference - np.sqrt(max(d1**2 - 2 * phi * d1 * d2 + d2**2, 0.0))
    high = difference + np.sqrt(max(e2**2 - 2 * phi * e2 * e1 + e1**2, 0.0))
    return max(-1.0, float(low)), min(1.0, float(high))


def mcnemar_exact_p(a_only: int, b_only: int) -> float:
    """McNemar's exact test: two-sided binomial test of the discordant pairs at ½ (1 when there are none)."""
    discordant = a_only + b_only
    if discordant == 0:
        return 1.0
    return float(binomtest(min(a_only, b_only), discordant, 0.5).pvalue)


def _bits(packed: bytes, n: int, name: str) -> np.ndarray:
    array = np.frombuffer(packed or b"", dtype=np.uint8)
    if array.size * 8 < n:
        raise ValueError(f"{name}: {array.size * 8} outcome bits for {n} items")
    return np.unpackbits(array, count=n).astype(bool)


def _digests(raw: bytes | None, n: int, name: str) -> np.ndarray | None:
    if raw is None:
        return None
    if len(raw) != 4 * n:
        raise ValueError(f"{name}: {len(raw)} bytes of answer digests for {n} items (4 per item)")
    return np.frombuffer(raw, dtype="<u4")


def paired_comparison(a_outcomes: bytes, b_outcomes: bytes, n: int, *, a_digests: bytes | None = None,
                      b_digests: bytes | None = None) -> Paired:  # fmt: skip
    """Compare run b with run a item by item (`n` items of the same suite, in the same order): b − a in
    points with its paired 95% interval, McNemar's exact p, answer agreement and the flipped items."""
    if n <= 0:
        raise ValueError("n: at least one item to compare")
    a, b = _bits(a_outcomes, n, "a_outcomes"), _bits(b_outcomes, n, "b_outcomes")
    both = int(np.count_nonzero(a & b))
    a_only, b_only = int(np.count_nonzero(a & ~b)), int(np.count_nonzero(b & ~a))
    neither = n - both - a_only - b_only
    low, high = newcombe_paired_interval(both, b_only, a_only, neither)  # p1 = b, p2 = a
    da, db = _digests(a_digests, n, "a_digests"), _digests(b_digests, n, "b_digests")
    agreement = None
    if da is not None and db is not None:
        # Two "no answer"s (digest 0) agree: both failed to answer alike.
        agreement = float(np.count_nonzero(da == db)) / n
    return Paired(
        n=n,
        a_correct=both + a_only,
        b_correct=both + b_only,
        difference_pts=100.0 * (b_only - a_only) / n,
        ci_low_pts=100.0 * low,
        ci_high_pts=100.0 * high,
        b_only=b_only,
        a_only=a_only,
        mcnemar_p=mcnemar_exact_p(a_only, b_only),
        agreement=agreement,
        flipped=np.flatnonzero(a != b).tolist(),
    )


def _settings_note(base: dict, quantized: dict) -> str:
    """What differs between two runs' settings, in words ("" when nothing does)."""
    labels = {"shots": "shots", "temperature": "temperature", "max_tokens": "max tokens"}
    parts = [
        f"{label} {base.get(key)} (base) vs {quantized.get(key)}"
        for key, label in labels.items()
        if base.get(key) != quantized.get(key)
    ]
    return ", ".join(parts)


def _same_suite(base: tuple, quantized: tuple) -> bool:
    """Both scores have outcomes over the same items: the same suite (sha256) and item count."""
    (b_items, b_prov, b_has), (q_items, q_prov, q_has) = base, quantized
    b_sha, q_sha = (b_prov.get("suite") or {}).get("sha256"), (q_prov.get("suite") or {}).get("sha256")
    return bool(b_has and q_has and b_items and b_items == q_items and b_sha and b_sha == q_sha)


def _compare(base_id: int, quantized_id: int, light: dict, binary: dict) -> dict:
    """One pair's cached value: {} when the scores are not comparable item by item."""
    base, quantized = light.get(base_id), light.get(quantized_id)
    if base is None or quantized is None or not _same_suite(base, quantized):
        return {}
    (b_outcomes, b_digests), (q_outcomes, q_digests) = binary[base_id], binary[quantized_id]
    try:
        result = paired_comparison(b_outcomes, q_outcomes, int(base[0]), a_digests=b_digests, b_digests=q_digests)
    except ValueError:  # outcomes or digests of another length than the item count: not comparable
        return {}
    figures = result.as_dict()
    figures["flipped"] = np.asarray(result.flipped, dtype="<u4").tobytes()  # compact in the cache
    b_prov, q_prov = base[1], quantized[1]
    return {
        "figures": figures,
        "suite": {k: (b_prov.get("suite") or {}).get(k) for k in ("id", "name", "version")},
        "settings_note": _settings_note(b_prov.get("settings") or {}, q_prov.get("settings") or {}),
        "base_run_id": b_prov.get("run_id"),
        "quantized_run_id": q_prov.get("run_id"),
    }


def measured_pairs(pairs: list[tuple[int, int, str]]) -> list[dict | None]:
    """For (base score id, quantized score id, version) of measured scores: the comparison item by item (figures
    with `flipped` as little-endian uint32 bytes, suite, settings_note, run ids), or None where the two are not
    of the same suite or lack outcomes. `version` must change whenever either score does (the caller's run ids,
    values and item counts): results are cached under it, and the outcomes of a pair are read only on a miss,
    for that pair's two scores only."""
    if not pairs:
        return []
    keys = [f"scores:paired:v1:{base}:{quantized}:{hashlib.sha1(version.encode()).hexdigest()[:20]}"
            for base, quantized, version in pairs]  # fmt: skip
    found = cache.get_many(keys)
    missing = [i for i, key in enumerate(keys) if key not in found]
    if missing:
        needed = {pairs[i][0] for i in missing} | {pairs[i][1] for i in missing}
        light, binary = {}, {}
        rows = Score.objects.filter(pk__in=needed, origin=Score.Origin.MEASURED).order_by()
        for pk, n_items, provenance, outcomes, digests in rows.values_list(
            "id", "n_items", "provenance", "outcomes", "answer_digests"
        ):
            light[pk] = (n_items, provenance or {}, outcomes is not None)
            binary[pk] = (bytes(outcomes) if outcomes is not None else None,
                          bytes(digests) if digests is not None else None)  # fmt: skip
        computed = {keys[i]: _compare(pairs[i][0], pairs[i][1], light, binary) for i in missing}
        cache.set_many(computed, PAIRED_CACHE_S)
        found.update(computed)
    return [found[key] or None for key in keys]
