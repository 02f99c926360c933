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


def test_it_sorts_by_average_with_missing_values_last(team, scores):
    order = [(r.model_name, r.quantization) for r in leaderboard(team=team).rows]
    assert order == [
        ("org/b", "FP16"), ("org/a", "BF16"), ("org/a", "AWQ"), ("org/a", "Q4_K_M"), ("org/c", "AWQ"), ("org/b", "GPTQ"),
    ]  # fmt: skip


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
    assert awq.deltas["MMLU"].points_lost == pytest.approx(1.5)
    assert awq.deltas["GSM8K"].points_lost == pytest.approx(3.0)
    assert awq.mean_points_lost == pytest.approx(np.mean([1.5, 3.0]))
    assert "GSM8K" not in rows[("org/a", "Q4_K_M")].deltas
    gptq = rows[("org/b", "GPTQ")]
    assert gptq.base_quantization == "FP16"
    assert gptq.deltas["Perplexity"].points_lost == pytest.approx(0.5)  # lower is better: 8.0 is worse
    assert report.without_base == ["org/c · AWQ"]
