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


# The issue's file: NaN, text, an empty model and a 150. It listed the first three and missed the 150,
# because the range of a score was checked only once every cell had been read.
ISSUE_FILE = (
    "model,quantization,benchmark,score\n"
    "org/a,BF16,MMLU,NaN\n"
    "org/a,BF16,GSM8K,sixty\n"
    ",BF16,ARC-Challenge,70\n"
    "org/a,BF16,HellaSwag,150\n"
    "org/a,BF16,IFEval,71.5\n"
)


def _problems(team, content: str | bytes, **kwargs) -> list[tuple]:
    raw = content.encode() if isinstance(content, str) else content
    with pytest.raises(ScoreFileError) as caught:
        scores_import(team=team, content=raw, **kwargs)
    return [(e.row, e.field) for e in caught.value.errors]


def test_every_bad_cell_of_a_long_csv_is_listed_in_one_pass(team):
    """NaN, text, an empty model and a 150: four problems, each with its row and field, and nothing written."""
    ScoreFactory(variant__team=team, value_pct=42.0)
    before = (ModelVariant.objects.count(), Benchmark.objects.count(), list(Score.objects.values_list("value_pct")))
    with pytest.raises(ScoreFileError) as caught:
        scores_import(team=team, content=ISSUE_FILE.encode())
    problems = [(e.row, e.field, e.message) for e in caught.value.errors]
    assert [(row, field) for row, field, _ in problems] == [(2, "score"), (3, "score"), (4, "model"), (5, "score")]
    assert "150 is outside 0–100 percent for HellaSwag" in problems[3][2]
    assert caught.value.as_dict()["detail"].startswith("The file was not imported: 4 problem(s)")
    after = (ModelVariant.objects.count(), Benchmark.objects.count(), list(Score.objects.values_list("value_pct")))
    assert after == before


def test_a_row_with_several_problems_lists_each_of_them(team):
    """An empty model, a score out of range, a bad n-shot and stderr on one row: all four are listed."""
    text = "model,quantization,benchmark,score,n_shot,stderr\n,BF16,MMLU,150,five,x\n"
    assert _problems(team, text) == [(2, "model"), (2, "n_shot"), (2, "stderr"), (2, "score")]


def test_an_unknown_column_is_listed_with_the_bad_cells_below_it(team):
    """A column we do not know no longer hides the bad cells of the rows."""
    text = "model,quantization,benchmark,score,colour\norg/a,BF16,MMLU,abc,red\norg/a,BF16,GSM8K,101,blue\n"
    assert _problems(team, text) == [(1, "colour"), (2, "score"), (3, "score")]


def test_every_bad_cell_of_a_wide_csv_is_listed_in_one_pass(team):
    """The same four kinds of problem in a wide file, named by their benchmark column."""
    text = "model,quantization,MMLU,GSM8K\norg/a,BF16,NaN,sixty\n,BF16,70,80\norg/b,BF16,150,50\n"
    assert _problems(team, text) == [(2, "MMLU"), (2, "GSM8K"), (3, "model"), (4, "MMLU")]
    assert not Score.objects.exists()


def test_every_bad_task_of_an_lm_eval_file_is_listed_in_one_pass(team):
    """No model anywhere, a NaN, a text and a 1.5 (150 %) metric: each named by its task and metric."""
    doc = lm_eval_doc(config={})
    doc["results"]["gsm8k"]["exact_match,strict-match"] = float("nan")
    doc["results"]["hellaswag"]["acc,none"] = "sixty"
    doc["results"]["mmlu"]["acc,none"] = 1.5
    problems = _problems(team, json.dumps(doc), file_format="lm_eval_json", quantization="BF16")
    assert problems == [
        ("upload", "model"), ("mmlu", "acc,none"), ("gsm8k", "exact_match,strict-match"), ("hellaswag", "acc,none"),
    ]  # fmt: skip
    assert not Score.objects.exists()


def test_imports_are_measured_unless_marked_simulated(team):
    """A user's import stores measured scores; the service's simulated flag marks every score it writes."""
    scores_import(team=team, content=LONG.format(a=60, b=59).encode())
    assert set(Score.objects.values_list("is_simulated", flat=True)) == {False}
    scores_import(team=team, content=LONG.format(a=61, b=58).encode(), simulated=True)
    assert set(Score.objects.values_list("is_simulated", flat=True)) == {True}
    scores_import(team=team, content=LONG.format(a=62, b=57).encode())  # measured again: no longer simulated
    assert set(Score.objects.values_list("is_simulated", flat=True)) == {False}


def test_demo_scores_are_stored_simulated(team):
    """The demo loader's generated scores are simulated, every one of them."""
    from apps.scores.demo import demo_scores_load

    summary = demo_scores_load(team=team)
    assert summary.rows > 0 and Score.objects.filter(team=team).count() == summary.rows
    assert not Score.objects.filter(team=team, is_simulated=False).exists()


def test_the_migration_marks_existing_demo_scores_simulated(team, other_team):
    """Backfill: scores of a demo team, or with the generated-demo source, become simulated; the rest stay."""
    from importlib import import_module

    from django.apps import apps

    migration = import_module("apps.scores.migrations.0002_score_is_simulated")
    other_team.is_demo = True
    other_team.save(update_fields=["is_demo"])
    demo_team_score = ScoreFactory(variant__team=other_team, source="anything")
    demo_source = ScoreFactory(variant__team=team, source="demo data (generated)")
    measured = ScoreFactory(variant__team=team, source="lm-evaluation-harness acc,none")
    migration.mark_demo_scores_simulated(apps, None)
    flags = dict(Score.objects.values_list("pk", "is_simulated"))
    assert (flags[demo_team_score.pk], flags[demo_source.pk], flags[measured.pk]) == (True, True, False)
