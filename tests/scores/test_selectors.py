"""Leaderboard and quantization figures, checked against numpy on a fixed dataset."""

import numpy as np
import pytest

from apps.scores.selectors import leaderboard, quantization_report
from apps.scores.services import scores_import
from tests.factories import BenchmarkFactory

pytestmark = pytest.mark.django_db

DATA = """model,quantization,benchmark,score,family
org/a,BF16,MMLU,70,A
org/a,BF16,GSM8K,80,A
org/a,AWQ,MMLU,68.5,A
org/a,AWQ,GSM8K,77,A
org/a,Q4_K_M,MMLU,66,A
org/b,FP16,MMLU,60,B
org/b,FP16,GSM8K,91,B
org/b,FP16,Perplexity,7.5,B
org/b,GPTQ,Perplexity,8.0,B
org/c,AWQ,MMLU,55,C
"""


@pytest.fixture
def scores(team):
    BenchmarkFactory(team=team, name="Perplexity", higher_is_better=False)
    scores_import(team=team, content=DATA.encode(), scale="percent")


def test_rows_average_the_higher_is_better_benchmarks_they_have(team, scores):
    board = leaderboard(team=team)
    by_key = {(r.model_name, r.quantization): r for r in board.rows}
    assert by_key[("org/a", "BF16")].average_pct == pytest.approx(np.mean([70, 80]))
    assert by_key[("org/b", "FP16")].average_pct == pytest.approx(np.mean([60, 91]))  # perplexity left out
    assert by_key[("org/b", "FP16")].benchmark_count == 3
    assert by_key[("org/a", "Q4_K_M")].scores == {"GSM8K": None, "MMLU": 66.0, "Perplexity": None}
    assert by_key[("org/b", "GPTQ")].average_pct is None
    assert [b.name for b in board.benchmarks] == ["GSM8K", "MMLU", "Perplexity"]


def test_it_sorts_by_average_with_incomplete_then_missing_values_last(team, scores):
    """Both averaged benchmarks first (by average), then one of two (by average), then no average at all."""
    order = [(r.model_name, r.quantization) for r in leaderboard(team=team).rows]
    assert order == [
        ("org/b", "FP16"), ("org/a", "BF16"), ("org/a", "AWQ"), ("org/a", "Q4_K_M"), ("org/c", "AWQ"), ("org/b", "GPTQ"),
    ]  # fmt: skip
    coverage = [(r.coverage_count, r.coverage_total, r.complete) for r in leaderboard(team=team).rows]
    assert coverage == [(2, 2, True), (2, 2, True), (2, 2, True), (1, 2, False), (1, 2, False), (0, 2, False)]


SEVEN = ["MMLU", "MMLU-Pro", "GSM8K", "HellaSwag", "ARC-Challenge", "TruthfulQA", "IFEval"]


def _seven_benchmark_board(team):
    """org/full has all 7 benchmarks at 60; org/partial only 2 of them, at 90."""
    lines = ["model,quantization,benchmark,score"]
    lines += [f"org/full,BF16,{name},60" for name in SEVEN]
    lines += [f"org/partial,BF16,{name},90" for name in SEVEN[:2]]
    scores_import(team=team, content="\n".join(lines).encode(), scale="percent")


def test_a_variant_with_2_of_7_benchmarks_ranks_after_one_with_all_7(team):
    """The issue's case: a higher average over 2 of 7 benchmarks does not outrank the variant that has all 7."""
    _seven_benchmark_board(team)
    rows = leaderboard(team=team).rows
    assert [(r.model_name, r.average_pct, r.coverage_count, r.coverage_total) for r in rows] == [
        ("org/full", 60.0, 7, 7), ("org/partial", 90.0, 2, 7),
    ]  # fmt: skip
    ascending = leaderboard(team=team, descending=False).rows
    assert [r.model_name for r in ascending] == ["org/full", "org/partial"]  # gaps rank last either way


def test_the_average_and_coverage_follow_the_benchmarks_shown(team):
    """Filtered to the 2 benchmarks both have, both variants are complete and rank by average."""
    _seven_benchmark_board(team)
    rows = leaderboard(team=team, benchmark_names=SEVEN[:2]).rows
    assert [(r.model_name, r.average_pct, r.coverage_count, r.coverage_total) for r in rows] == [
        ("org/partial", 90.0, 2, 2), ("org/full", 60.0, 2, 2),
    ]  # fmt: skip


def test_averages_and_coverage_match_numpy_on_a_sparse_random_board(team):
    """Averages over whatever each variant has, checked against np.mean row by row on a random sparse board."""
    rng = np.random.default_rng(11)
    names = [f"B{j}" for j in range(6)]
    expected = {}
    lines = ["model,quantization,benchmark,score"]
    for i in range(25):
        kept = [(name, round(float(rng.uniform(10, 95)), 2)) for name in names if rng.random() < 0.6]
        for name, value in kept:
            lines.append(f"org/m{i},BF16,{name},{value}")
        if kept:
            expected[f"org/m{i}"] = (float(np.mean([v for _, v in kept])), len(kept), dict(kept))
    scores_import(team=team, content="\n".join(lines).encode(), scale="percent")
    rows = leaderboard(team=team).rows
    assert {r.model_name for r in rows} == set(expected)
    for row in rows:
        mean, count, values = expected[row.model_name]
        assert row.average_pct == pytest.approx(mean)
        assert (row.coverage_count, row.benchmark_count) == (count, count)
        assert {k: v for k, v in row.scores.items() if v is not None} == pytest.approx(values)
    ranked = [(r.coverage_count, r.average_pct) for r in rows]
    assert ranked == sorted(ranked, key=lambda cv: (-cv[0], -cv[1]))


def test_simulated_scores_are_left_out_unless_included(team, scores):
    """A simulated score changes neither rows nor averages by default; included, its row says simulated."""
    scores_import(team=team, content=b"model,quantization,benchmark,score\norg/a,BF16,GSM8K,10\norg/s,BF16,MMLU,99\n",
                  scale="percent", simulated=True)  # fmt: skip
    default = {(r.model_name, r.quantization): r for r in leaderboard(team=team).rows}
    assert ("org/s", "BF16") not in default
    assert default[("org/a", "BF16")].scores["GSM8K"] is None and default[("org/a", "BF16")].average_pct == 70
    assert not any(r.simulated for r in default.values())
    included = {(r.model_name, r.quantization): r for r in leaderboard(team=team, include_simulated=True).rows}
    assert included[("org/s", "BF16")].simulated and included[("org/s", "BF16")].simulated_benchmarks == ["MMLU"]
    mixed = included[("org/a", "BF16")]
    assert (mixed.simulated, mixed.simulated_benchmarks, mixed.average_pct) == (True, ["GSM8K"], 40)
    assert not included[("org/b", "FP16")].simulated


def test_quantization_report_leaves_simulated_scores_out_unless_included(team, scores):
    """A simulated quantized variant is not compared by default; included, its row is marked simulated."""
    scores_import(team=team, content=b"model,quantization,benchmark,score\norg/a,FP8,MMLU,69\n", scale="percent",
                  simulated=True)  # fmt: skip
    assert ("org/a", "FP8") not in {(r.model_name, r.quantization) for r in quantization_report(team=team).rows}
    rows = {(r.model_name, r.quantization): r for r in quantization_report(team=team, include_simulated=True).rows}
    fp8 = rows[("org/a", "FP8")]
    assert (fp8.simulated, fp8.simulated_benchmarks, fp8.mean_points_lost) == (True, ["MMLU"], pytest.approx(1.0))
    assert not rows[("org/a", "AWQ")].simulated


def test_it_sorts_by_one_benchmark_either_way(team, scores):
    up = [r.quantization for r in leaderboard(team=team, sort="GSM8K", descending=False).rows]
    assert up[:3] == ["AWQ", "BF16", "FP16"]
    down = leaderboard(team=team, sort="MMLU").rows
    assert [r.scores["MMLU"] for r in down[:5]] == [70, 68.5, 66, 60, 55]


def test_it_filters_by_benchmark_family_and_quantization(team, scores):
    only_gsm = leaderboard(team=team, benchmark_names=["gsm8k"])
    assert [b.name for b in only_gsm.benchmarks] == ["GSM8K"]
    assert len(only_gsm.rows) == 3 and all(set(r.scores) == {"GSM8K"} for r in only_gsm.rows)
    assert {r.model_name for r in leaderboard(team=team, family="b").rows} == {"org/b"}
    assert {r.model_name for r in leaderboard(team=team, quantization="awq").rows} == {"org/a", "org/c"}


def test_it_sees_only_its_team(team, other_team, scores):
    assert leaderboard(team=other_team).rows == []


def test_quantization_report_gives_points_lost_against_the_base(team, scores):
    report = quantization_report(team=team)
    rows = {(r.model_name, r.quantization): r for r in report.rows}
    awq = rows[("org/a", "AWQ")]
    assert awq.base_quantization == "BF16"
    assert awq.deltas["MMLU"]["points_lost"] == pytest.approx(1.5)
    assert awq.deltas["GSM8K"]["points_lost"] == pytest.approx(3.0)
    assert awq.mean_points_lost == pytest.approx(np.mean([1.5, 3.0]))
    assert "GSM8K" not in rows[("org/a", "Q4_K_M")].deltas
    gptq = rows[("org/b", "GPTQ")]
    assert gptq.base_quantization == "FP16"
    assert gptq.deltas["Perplexity"]["points_lost"] == pytest.approx(0.5)  # lower is better: 8.0 is worse
    assert report.without_base == ["org/c · AWQ"]
