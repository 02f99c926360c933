"""Importing benchmark files as suites: all or nothing, versioned per team, every bad row named."""

import hashlib

import pytest
from django.core.exceptions import ValidationError
from django.db import connection

from apps.benchmarks import imports
from apps.benchmarks.engine import taskdefs
from apps.benchmarks.imports import item_data, suite_answer_key, suite_delete, suite_import
from apps.benchmarks.models import BenchmarkItem, BenchmarkRun, BenchmarkSuite
from apps.scores.models import Benchmark
from tests.benchmarks import files
from tests.factories import BenchmarkFactory

pytestmark = pytest.mark.django_db


REAL_TASK_DEFINITION = taskdefs.task_definition


@pytest.fixture(autouse=True)
def task_definition(monkeypatch):
    """The task definition is taskdefs' business; the import only stores what it returns (a fake here)."""
    calls = []

    def fake(kind, shots):
        calls.append((kind, shots))
        return {"kind": kind, "shots": shots, "template": "fake"}

    monkeypatch.setattr(taskdefs, "task_definition", fake)
    return calls


def counts() -> tuple[int, int, int]:
    return BenchmarkSuite.objects.count(), BenchmarkItem.objects.count(), Benchmark.objects.count()


def refused(**kwargs) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        suite_import(**kwargs)
    return caught.value.messages


def test_mmlu_pro_parquet_with_its_validation_split_is_stored(team, member, task_definition):
    """Items in file order, N/A padding gone, categories counted, few-shot split apart, sha256 of the bytes."""
    tests = files.mmlu_pro_items(30, categories=("math", "law", "history"), seed=1)
    shots = files.mmlu_pro_items(6, categories=("math", "law", "history"), seed=2)
    test_bytes, shot_bytes = files.mmlu_pro_parquet(tests), files.mmlu_pro_parquet(shots)
    suite = suite_import(team=team, user=member, name="MMLU-Pro", files=[("test.parquet", test_bytes)],
                         fewshot_files=[("validation.parquet", shot_bytes)], description="Full test split")  # fmt: skip
    suite.refresh_from_db()
    assert (suite.version, suite.kind, suite.source_format, suite.file_name) == (
        1, "mmlu_pro", "mmlu-pro-parquet", "test.parquet")  # fmt: skip
    assert (suite.item_count, suite.fewshot_count, suite.created_by, suite.description) == (
        30, 6, member, "Full test split")  # fmt: skip
    assert suite.subjects == {"history": 10, "law": 10, "math": 10}
    assert suite.sha256 == hashlib.sha256(test_bytes + shot_bytes).hexdigest()
    assert (suite.benchmark.team, suite.benchmark.name) == (team, "MMLU-Pro")
    assert suite.task == {"kind": "mmlu_pro", "shots": 0, "template": "fake"}
    assert task_definition == [("mmlu_pro", 0)]
    stored = list(suite.items.filter(split="test").order_by("index"))
    assert [item.index for item in stored] == list(range(30))
    assert [item_data(item) for item in stored] == tests
    assert all("N/A" not in item.choices for item in stored)
    assert [item_data(item) for item in suite.items.filter(split="fewshot").order_by("index")] == shots
    assert any("padding options were dropped" in warning for warning in suite.import_warnings)
    assert suite.import_warnings[0].startswith("file test.parquet: ")


def test_the_stored_task_is_the_task_definition_at_zero_shots(team, member, monkeypatch):
    monkeypatch.setattr(taskdefs, "task_definition", REAL_TASK_DEFINITION)
    try:
        expected = taskdefs.task_definition("hellaswag", shots=0)
    except NotImplementedError:
        pytest.skip("taskdefs.task_definition is not implemented yet")
    suite = suite_import(team=team, user=member, name="h", files=[("h.jsonl", files.hellaswag_jsonl(
        files.hellaswag_items(3)))])  # fmt: skip
    suite.refresh_from_db()
    assert suite.task == expected


def test_layout_is_told_without_a_kind(team, member):
    suite = suite_import(team=team, user=member, name="gsm", files=[("gsm8k.jsonl", files.gsm8k_jsonl(
        files.gsm8k_items(5)))])  # fmt: skip
    assert (suite.kind, suite.benchmark.name, suite.subjects) == ("gsm8k", "GSM8K", {})
    assert [item_data(item) for item in suite.items.order_by("index")] == files.gsm8k_items(5)


def test_mmlu_per_subject_csvs_and_dev_files(team, member):
    """57-subject MMLU is many CSVs: subjects from the names, dev CSVs as few-shot examples, one index."""
    tests = {subject: files.mmlu_items(4, subjects=(subject,), seed=n)
             for n, subject in enumerate(("anatomy", "virology", "astronomy"))}  # fmt: skip
    test_files = [(f"data/test/{subject}_test.csv", files.mmlu_csv(items)) for subject, items in tests.items()]
    dev_files = [(f"{subject}_dev.csv", files.mmlu_csv(items[:2])) for subject, items in tests.items()]
    suite = suite_import(team=team, user=member, name="MMLU", files=test_files, fewshot_files=dev_files)
    assert (suite.kind, suite.source_format, suite.item_count, suite.fewshot_count) == ("mmlu", "mmlu-csv", 12, 6)
    assert suite.subjects == {"anatomy": 4, "astronomy": 4, "virology": 4}
    assert suite.file_name == "data/test/anatomy_test.csv and 2 more"
    fewshot = list(suite.items.filter(split="fewshot").order_by("index").values_list("index", "subject"))
    assert fewshot == [(0, "anatomy"), (1, "anatomy"), (2, "virology"), (3, "virology"), (4, "astronomy"),
                       (5, "astronomy")]  # fmt: skip


@pytest.mark.parametrize("kind", ["arc", "hellaswag", "truthfulqa_mc1", "mmlu"])
def test_every_kind_imports_under_its_benchmark_label(team, member, kind):
    make = {"arc": files.arc_items, "hellaswag": files.hellaswag_items, "truthfulqa_mc1": files.truthfulqa_items,
            "mmlu": files.mmlu_items}[kind]  # fmt: skip
    file_name, data = files.build(kind, make(8), "json" if kind == "mmlu" else "")
    suite = suite_import(team=team, user=member, name=kind, files=[(file_name, data)])
    labels = {"arc": "ARC", "hellaswag": "HellaSwag", "truthfulqa_mc1": "TruthfulQA MC1", "mmlu": "MMLU"}
    assert (suite.kind, suite.benchmark.name, suite.item_count) == (kind, labels[kind], 8)


def test_same_name_is_the_next_version_per_team(team, other_team, member, outsider):
    data = [("g.jsonl", files.gsm8k_jsonl(files.gsm8k_items(3)))]
    first = suite_import(team=team, user=member, name="GSM8K", files=data)
    second = suite_import(team=team, user=member, name=" GSM8K ", files=data)
    other_name = suite_import(team=team, user=member, name="GSM8K small", files=data)
    elsewhere = suite_import(team=other_team, user=outsider, name="GSM8K", files=data)
    assert [s.version for s in (first, second, other_name, elsewhere)] == [1, 2, 1, 1]
    assert second.name == "GSM8K"
    assert first.benchmark_id == second.benchmark_id == other_name.benchmark_id
    assert elsewhere.benchmark.team == other_team and elsewhere.benchmark_id != first.benchmark_id


def test_an_existing_benchmark_of_the_team_is_reused(team, member):
    """Imported GSM8K scores and measured ones share one leaderboard column."""
    existing = BenchmarkFactory(team=team, name="GSM8K")
    suite = suite_import(team=team, user=member, name="g", files=[("g.jsonl", files.gsm8k_jsonl(files.gsm8k_items(2)))])
    assert suite.benchmark == existing
    assert Benchmark.objects.filter(team=team).count() == 1


def test_a_bad_row_refuses_the_whole_import_naming_file_row_and_field(team, member):
    before = counts()
    good = files.gsm8k_records(files.gsm8k_items(11))
    bad = [*good, {"question": "q", "answer": "#### twelve"}]
    messages = refused(team=team, user=member, name="g", files=[("a.jsonl", files.jsonl(good)),
                                                                ("b.jsonl", files.jsonl(bad))])  # fmt: skip
    assert messages == ['file b.jsonl, row 12, field "answer": "#### twelve" is not a number']
    assert counts() == before


def test_a_bad_fewshot_file_refuses_the_import(team, member):
    before = counts()
    tests = files.mmlu_pro_items(5)
    records = files.mmlu_pro_records(files.mmlu_pro_items(3))
    records[2]["answer_index"] = 0 if records[2]["answer"] != "A" else 1
    messages = refused(team=team, user=member, name="p", files=[("test.parquet", files.mmlu_pro_parquet(tests))],
                       fewshot_files=[("val.parquet", files.parquet(records))])  # fmt: skip
    assert len(messages) == 1
    assert messages[0].startswith('file val.parquet, row 3, field "answer_index": ')
    assert counts() == before


def test_file_level_problems_name_the_file(team, member):
    messages = refused(team=team, user=member, name="x", files=[("empty.jsonl", b""), ("bin.json", b"\xff\xfe")])
    assert messages == ["file empty.jsonl: the file is empty",
                        "file bin.json: the file is not UTF-8 text (byte 1 cannot be decoded)"]  # fmt: skip


def test_files_of_different_benchmarks_are_refused(team, member):
    before = counts()
    messages = refused(team=team, user=member, name="x", files=[
        ("g.jsonl", files.gsm8k_jsonl(files.gsm8k_items(2))), ("anatomy_test.csv", files.mmlu_csv(files.mmlu_items(2)))])  # fmt: skip
    assert messages == ["a suite holds one benchmark, but file g.jsonl is GSM8K, file anatomy_test.csv is MMLU"]
    assert counts() == before


def test_a_forced_kind_the_file_does_not_match_is_refused(team, member):
    messages = refused(team=team, user=member, name="x", kind="hellaswag",
                       files=[("g.jsonl", files.gsm8k_jsonl(files.gsm8k_items(2)))])  # fmt: skip
    assert messages == [f'file g.jsonl: no row has the field "{name}" that a HellaSwag file has'
                        for name in ("endings", "label", "ctx")]  # fmt: skip


def test_bad_name_kind_and_no_files_are_named(team, member):
    data = [("g.jsonl", files.gsm8k_jsonl(files.gsm8k_items(1)))]
    with pytest.raises(ValidationError) as caught:
        suite_import(team=team, user=member, name="  ", files=data)
    assert caught.value.message_dict == {"name": ["Give the suite a name."]}
    with pytest.raises(ValidationError) as caught:
        suite_import(team=team, user=member, name="x" * 201, files=data)
    assert "name" in caught.value.message_dict
    with pytest.raises(ValidationError) as caught:
        suite_import(team=team, user=member, name="x", files=data, kind="squad")
    assert "kind" in caught.value.message_dict
    assert refused(team=team, user=member, name="x", files=[]) == ["Choose a benchmark file to import."]


def test_a_failure_while_storing_items_leaves_nothing(team, member, monkeypatch):
    """The test items are stored, then storing the few-shot ones fails: the suite and its items roll back."""
    real = imports._store_items
    calls = []

    def failing(suite, items, split):
        calls.append(split)
        if split == BenchmarkItem.Split.FEWSHOT:
            raise RuntimeError("disk full")
        real(suite, items, split)
        assert BenchmarkItem.objects.filter(suite=suite).count() == 12  # stored, inside the transaction

    monkeypatch.setattr(imports, "_store_items", failing)
    before = counts()
    with pytest.raises(RuntimeError):
        suite_import(team=team, user=member, name="g", files=[("g.jsonl", files.gsm8k_jsonl(files.gsm8k_items(12)))],
                     fewshot_files=[("f.jsonl", files.gsm8k_jsonl(files.gsm8k_items(2)))])  # fmt: skip
    assert calls == ["test", "fewshot"]
    assert counts() == before


@pytest.mark.skipif(connection.vendor == "postgresql", reason="PostgreSQL stores items with one COPY")
def test_items_go_in_batches_elsewhere(team, member, monkeypatch):
    monkeypatch.setattr(imports, "BATCH_SIZE", 5)
    real = BenchmarkItem.objects.bulk_create
    sizes = []

    def counting(objs, *args, **kwargs):
        sizes.append(len(objs))
        return real(objs, *args, **kwargs)

    monkeypatch.setattr(BenchmarkItem.objects, "bulk_create", counting)
    suite = suite_import(
        team=team, user=member, name="g", files=[("g.jsonl", files.gsm8k_jsonl(files.gsm8k_items(12)))]
    )
    assert sizes == [5, 5, 2]
    assert suite.items.count() == 12


def test_answer_key_lists_the_test_items_in_order(team, member):
    tests = files.arc_items(5, seed=4)
    suite = suite_import(team=team, user=member, name="arc", files=[("arc.jsonl", files.arc_jsonl(tests))],
                         fewshot_files=[("dev.jsonl", files.arc_jsonl(files.arc_items(2, seed=9)))])  # fmt: skip
    key = list(suite_answer_key(suite))
    assert key == [{"index": i, "question": item.question, "choices": list(item.choices), "answer": item.answer,
                    "subject": ""} for i, item in enumerate(tests)]  # fmt: skip


def test_suite_delete_removes_items_and_is_refused_while_runs_exist(team, member):
    data = [("g.jsonl", files.gsm8k_jsonl(files.gsm8k_items(3)))]
    used = suite_import(team=team, user=member, name="used", files=data)
    unused = suite_import(team=team, user=member, name="unused", files=data)
    BenchmarkRun.objects.create(team=team, name="run", suite=used)
    with pytest.raises(ValidationError) as caught:
        suite_delete(suite=used)
    assert caught.value.messages == ["This suite has benchmark runs; delete them first."]
    suite_delete(suite=unused)
    assert list(BenchmarkSuite.objects.values_list("name", flat=True)) == ["used"]
    assert BenchmarkItem.objects.count() == 3
    assert Benchmark.objects.filter(team=team, name="GSM8K").exists()  # the leaderboard column stays
