"""Imports store percent, update instead of duplicating, and write nothing from a bad file."""

import json

import pytest

from apps.scores.importers import ScoreFileError
from apps.scores.models import Benchmark, ModelVariant, Score
from apps.scores.services import scores_import, scores_import_plan
from tests.factories import BenchmarkFactory, ScoreFactory
from tests.scores.test_importers import lm_eval_doc

pytestmark = pytest.mark.django_db

LONG = "model,quantization,benchmark,score\norg/a,BF16,MMLU,{a}\norg/a,AWQ,MMLU,{b}\n"


def test_fractions_are_detected_and_stored_as_percent(team):
    summary = scores_import(team=team, content=LONG.format(a=0.655, b=0.64).encode())
    assert summary.scale == "fraction"
    assert sorted(Score.objects.values_list("value_pct", flat=True)) == pytest.approx([64.0, 65.5])


def test_percents_are_detected_and_kept(team):
    summary = scores_import(team=team, content=LONG.format(a=65.5, b=0.5).encode())
    assert summary.scale == "percent"
    assert sorted(Score.objects.values_list("value_pct", flat=True)) == pytest.approx([0.5, 65.5])


def test_the_scale_can_be_given(team):
    summary = scores_import(team=team, content=LONG.format(a=1, b=0.5).encode(), scale="percent")
    assert summary.scale == "percent"
    assert sorted(Score.objects.values_list("value_pct", flat=True)) == [0.5, 1.0]


def test_it_creates_variants_and_benchmarks_and_reports_counts(team):
    summary = scores_import(team=team, content=LONG.format(a=60, b=59).encode())
    assert (summary.rows, summary.scores_created, summary.scores_updated) == (2, 2, 0)
    assert (summary.variants_created, summary.benchmarks_created) == (2, 1)
    assert set(ModelVariant.objects.filter(team=team).values_list("quantization", flat=True)) == {"BF16", "AWQ"}


def test_reimporting_updates_instead_of_duplicating(team):
    scores_import(team=team, content=LONG.format(a=60, b=59).encode())
    summary = scores_import(team=team, content=LONG.format(a=61, b=58).encode())
    assert (summary.scores_created, summary.scores_updated, summary.variants_created) == (0, 2, 0)
    assert Score.objects.count() == 2
    assert sorted(Score.objects.values_list("value_pct", flat=True)) == [58.0, 61.0]


def test_benchmark_names_match_case_insensitively(team):
    BenchmarkFactory(team=team, name="MMLU")
    scores_import(team=team, content=b"model,quantization,benchmark,score\nm,BF16,mmlu,60\n")
    assert list(Benchmark.objects.filter(team=team).values_list("name", flat=True)) == ["MMLU"]


def test_a_bad_row_writes_nothing_at_all(team):
    ScoreFactory(variant__team=team, value_pct=42.0)
    before = (ModelVariant.objects.count(), Benchmark.objects.count(), list(Score.objects.values_list("value_pct")))
    bad = b"model,quantization,benchmark,score\nnew/model,BF16,NewBench,50\nnew/model,BF16,Other,oops\n"
    with pytest.raises(ScoreFileError) as caught:
        scores_import(team=team, content=bad)
    assert [(e.row, e.field) for e in caught.value.errors] == [(3, "score")]
    after = (ModelVariant.objects.count(), Benchmark.objects.count(), list(Score.objects.values_list("value_pct")))
    assert after == before


def test_a_value_outside_the_scale_is_named(team):
    with pytest.raises(ScoreFileError) as caught:
        scores_import(team=team, content=b"model,quantization,benchmark,score\nm,BF16,MMLU,150\nm,AWQ,MMLU,-1\n")
    assert [(e.row, e.field) for e in caught.value.errors] == [(2, "score"), (3, "score")]
    assert not Score.objects.exists()


def test_a_benchmark_scale_max_bounds_its_scores(team):
    BenchmarkFactory(team=team, name="MT-Bench", scale_max=10)
    with pytest.raises(ScoreFileError, match="0–10 percent"):
        scores_import(team=team, content=b"model,quantization,benchmark,score\nm,BF16,MT-Bench,11\n", scale="percent")


def test_lm_eval_import_stores_percent_and_stderr(team):
    content = json.dumps(lm_eval_doc()).encode()
    summary = scores_import(team=team, content=content, file_format="lm_eval_json", quantization="BF16")
    assert summary.scale == "fraction" and summary.rows == 4
    mmlu = Score.objects.get(benchmark__name="MMLU")
    assert mmlu.value_pct == pytest.approx(65.12) and mmlu.stderr_pct == pytest.approx(0.38)
    assert mmlu.variant.model_name == "meta-llama/Llama-3.1-8B-Instruct"


def test_imports_never_touch_another_team(team, other_team):
    ScoreFactory(variant__team=other_team, variant__model_name="org/a", variant__quantization="BF16",
                 benchmark__name="MMLU", value_pct=10.0)  # fmt: skip
    scores_import(team=team, content=LONG.format(a=60, b=59).encode())
    assert Score.objects.get(team=other_team).value_pct == 10.0
    assert Score.objects.filter(team=team).count() == 2


def test_the_plan_says_what_would_change_without_writing(team):
    scores_import(team=team, content=b"model,quantization,benchmark,score\norg/a,BF16,MMLU,60\n")
    plan = scores_import_plan(team=team, content=LONG.format(a=61, b=59).encode())
    assert (plan.updated_scores, plan.new_scores) == (1, 1)
    assert plan.new_variants == [("org/a", "AWQ")] and plan.new_benchmarks == []
    assert Score.objects.count() == 1


def test_variant_details_from_a_file_fill_in_existing_variants(team):
    scores_import(team=team, content=b"model,quantization,benchmark,score\norg/a,BF16,MMLU,60\n")
    scores_import(team=team, content=b"model,quantization,family,parameters_b,MMLU\norg/a,BF16,Fam,8,61\n")
    variant = ModelVariant.objects.get(team=team)
    assert (variant.family, variant.parameters_b) == ("Fam", 8.0)
