"""The paired comparison of two measured scores: Newcombe's interval, McNemar's exact test, agreement, flips."""

import zlib

import numpy as np
import pytest

from apps.scores.paired import mcnemar_exact_p, newcombe_paired_interval, paired_comparison

Z = 1.959963984540054


def packed(bits) -> bytes:
    return np.packbits(np.asarray(bits, dtype=bool)).tobytes()


def digests(answers) -> bytes:
    return np.array([zlib.crc32(a.encode()) if a else 0 for a in answers], dtype="<u4").tobytes()


def test_the_interval_matches_a_published_example():
    """Cavo et al. 2012 as worked in Fagerland, Lydersen & Laake, "Statistical Analysis of Contingency Tables"
    (ch. 8, Newcombe's square-and-add interval): 59/6/16/80 gives −0.0621 (95% CI −0.1186 to −0.0046)."""
    low, high = newcombe_paired_interval(59, 6, 16, 80)
    assert (round(low, 4), round(high, 4)) == (-0.1186, -0.0046)


def test_the_interval_of_a_table_without_discordant_pairs_is_the_wilson_half_width():
    """All 10 items right in both: the difference is 0; φ is 0 (an empty margin), so each bound is the distance
    from 1 to the Wilson lower bound of 10/10, which is n / (n + z²) by hand."""
    low, high = newcombe_paired_interval(10, 0, 0, 0)
    half = 1 - 10 / (10 + Z**2)
    assert low == pytest.approx(-half) and high == pytest.approx(half)


def test_the_phi_correction_narrows_the_interval_of_correlated_runs():
    """Runs that mostly agree (ad − bc large) get a narrower interval than the same margins with φ = 0 would;
    the hand-computed φ here: (ad − bc − n/2) / √(product of the margins)."""
    both, first, second, neither = 400, 10, 30, 560
    low, high = newcombe_paired_interval(both, first, second, neither)
    n = 1000
    p1, p2 = (both + first) / n, (both + second) / n

    def wilson(p):
        centre = (p + Z**2 / (2 * n)) / (1 + Z**2 / n)
        half = Z / (1 + Z**2 / n) * np.sqrt(p * (1 - p) / n + Z**2 / (4 * n * n))
        return centre - half, centre + half

    (l1, u1), (l2, u2) = wilson(p1), wilson(p2)
    phi = (both * neither - first * second - n / 2) / np.sqrt(410 * 590 * 430 * 570)
    expected_low = (p1 - p2) - np.sqrt((p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2)
    expected_high = (p1 - p2) + np.sqrt((p2 - l2) ** 2 - 2 * phi * (p2 - l2) * (u1 - p1) + (u1 - p1) ** 2)
    assert (low, high) == (pytest.approx(expected_low), pytest.approx(expected_high))
    unpaired_half = np.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    assert (p1 - p2) - low < unpaired_half


def test_the_interval_stays_within_what_is_possible():
    """Every item right in one run only: the difference is 1 and the upper bound is clamped to 1."""
    low, high = newcombe_paired_interval(0, 5, 0, 0)
    assert 0 < low < 1 and high == 1.0


@pytest.mark.parametrize(
    ("a_only", "b_only", "expected"),
    [(0, 0, 1.0), (0, 5, 2 * 0.5**5), (1, 9, 2 * (1 + 10) / 1024), (9, 1, 2 * (1 + 10) / 1024), (3, 3, 1.0)],
)
def test_mcnemar_exact_p_by_hand(a_only, b_only, expected):
    """Two-sided binomial tail of the smaller discordant count at ½, e.g. 1 of 10: 2 × (1 + 10) / 2¹⁰."""
    assert mcnemar_exact_p(a_only, b_only) == pytest.approx(expected)


def test_a_constructed_pair_gives_every_figure():
    """12 items: a right on 0–7, b right on 0–5 and 8: two flips to wrong (6, 7), one to right (8)."""
    a = [1] * 8 + [0] * 4
    b = [1] * 6 + [0, 0, 1, 0, 0, 0]
    answers_a = ["A", "B", "C", "D", "A", "B", "C", "D", "", "A", "B", "C"]
    answers_b = ["A", "B", "C", "D", "A", "B", "A", "A", "D", "", "B", "D"]
    result = paired_comparison(packed(a), packed(b), 12, a_digests=digests(answers_a), b_digests=digests(answers_b))
    assert (result.n, result.a_correct, result.b_correct) == (12, 8, 7)
    assert (result.a_only, result.b_only) == (2, 1)
    assert result.difference_pts == pytest.approx(100 * (7 - 8) / 12)
    assert result.flipped == [6, 7, 8]
    assert result.mcnemar_p == pytest.approx(1.0)  # 1 of 3: 2 × (1 + 3) / 8 = 1
    assert result.agreement == pytest.approx(7 / 12)  # items 0–5 and 10
    low, high = newcombe_paired_interval(6, 1, 2, 3)  # both, b only, a only, neither
    assert (result.ci_low_pts, result.ci_high_pts) == (pytest.approx(100 * low), pytest.approx(100 * high))
    assert result.ci_low_pts < result.difference_pts < result.ci_high_pts


def test_swapping_the_runs_negates_the_difference_and_its_interval():
    rng = np.random.default_rng(3)
    a, b = rng.random(500) < 0.7, rng.random(500) < 0.6
    ab, ba = paired_comparison(packed(a), packed(b), 500), paired_comparison(packed(b), packed(a), 500)
    assert ab.difference_pts == pytest.approx(-ba.difference_pts)
    assert (ab.ci_low_pts, ab.ci_high_pts) == (pytest.approx(-ba.ci_high_pts), pytest.approx(-ba.ci_low_pts))
    assert ab.mcnemar_p == pytest.approx(ba.mcnemar_p) and ab.agreement is None


def test_identical_runs_show_no_difference_and_p_of_1():
    bits = packed([1, 0, 1, 1, 0])
    result = paired_comparison(bits, bits, 5, a_digests=digests("ABCDA"), b_digests=digests("ABCDA"))
    assert (result.difference_pts, result.mcnemar_p, result.flipped, result.agreement) == (0.0, 1.0, [], 1.0)
    assert -100 <= result.ci_low_pts < 0 < result.ci_high_pts <= 100


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"a_outcomes": b"\xff", "n": 9}, "a_outcomes: 8 outcome bits for 9 items"),
        ({"a_digests": b"\x00" * 7}, "a_digests: 7 bytes of answer digests for 8 items"),
        ({"n": 0}, "n: at least one item"),
    ],
)
def test_bad_input_is_named(kwargs, message):
    args = {"a_outcomes": b"\xff\xff", "b_outcomes": b"\xff\xff", "n": 8, "a_digests": None,
            "b_digests": None} | kwargs  # fmt: skip
    with pytest.raises(ValueError, match=message):
        paired_comparison(args["a_outcomes"], args["b_outcomes"], args["n"], a_digests=args["a_digests"],
                          b_digests=args["b_digests"])  # fmt: skip


def test_an_interval_reads_with_a_dash_unless_an_end_is_negative():
    """'0.2–1.6', but '-4.3 to 15.2': a dash beside a minus sign reads as a range from 4.3."""
    from apps.scores.templatetags.scores_extras import interval_text

    assert interval_text(0.2, 1.6) == "0.2–1.6"
    assert interval_text(-4.3, 15.2) == "-4.3 to 15.2"
    assert interval_text(-3.0, -1.5) == "-3.0 to -1.5"
    assert interval_text(None, 2.0) == ""
