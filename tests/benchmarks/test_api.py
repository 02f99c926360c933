"""The benchmark suite and run API: import, list, detail, delete, answer key and items of suites; create, estimate,
list, detail (progress and results), start, cancel, delete, progress as SSE, answers and export of runs; by role
and team; bad input is a 400 naming the field (or the file row), never a 500."""

import json
from collections import Counter

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer

from apps.benchmarks.engine import stats
from apps.benchmarks.models import BenchmarkAnswer, BenchmarkItem, BenchmarkRun, BenchmarkSuite, BenchmarkTarget, Kind
from apps.benchmarks.models import Status as RunStatus
from apps.providers.models import ProviderEndpoint
from apps.scores.models import Benchmark, ServedVariant
from tests.benchmarks.files import gsm8k_items, gsm8k_jsonl, mmlu_csv, mmlu_items
from tests.factories import ModelVariantFactory
from tests.test_api_schema import assert_documented

pytestmark = pytest.mark.django_db
SUITES, RUNS = "/api/v1/benchmark-suites", "/api/v1/benchmark-runs"
SUBJECTS = ("law", "law", "law", "math", "math", "math")  # items 0–5


def problems(response) -> set[str]:
    """The fields a 400 names (every error body also carries its request id)."""
    return set(response.json()) - {"request_id"}


def sim(team, name="sim", models=("sim-small", "sim-large"), **fields) -> ProviderEndpoint:
    return ProviderEndpoint.objects.create(team=team, name=name, kind="sim", base_url="sim://local?zero_latency=1",
                                           model_names=list(models), **fields)  # fmt: skip


def suite_for(team, *, name="MMLU mini", subjects=SUBJECTS, fewshot: int = 0) -> BenchmarkSuite:
    """An MMLU-shaped suite written straight to the tables (the import has its own tests): item i's answer is
    "ABCD"[i % 4]."""
    benchmark, _ = Benchmark.objects.get_or_create(team=team, name="MMLU")
    version = BenchmarkSuite.objects.filter(team=team, name=name).count() + 1
    suite = BenchmarkSuite.objects.create(
        team=team, name=name, version=version, kind=Kind.MMLU, benchmark=benchmark, source_format="mmlu-csv", file_name="mini.csv",
        sha256="0" * 64, item_count=len(subjects), fewshot_count=fewshot, subjects=dict(Counter(subjects)),
        task={"template": "mmlu-chat", "extraction": "letter"},
    )  # fmt: skip
    BenchmarkItem.objects.bulk_create(
        [BenchmarkItem(suite=suite, index=i, subject=s, question=f"Question {i}?", choices=["w", "x", "y", "z"],
                       answer="ABCD"[i % 4]) for i, s in enumerate(subjects)]
        + [BenchmarkItem(suite=suite, split=BenchmarkItem.Split.FEWSHOT, index=i, subject=subjects[0],
                         question=f"Example {i}?", choices=["w", "x", "y", "z"], answer="A") for i in range(fewshot)]
    )  # fmt: skip
    return suite


def run_for(team, suite=None, *, status=RunStatus.PENDING, targets=None, **fields) -> BenchmarkRun:
    """A run written straight to the tables, one target per (endpoint, model) of `targets`."""
    suite = suite or suite_for(team)
    run = BenchmarkRun.objects.create(team=team, suite=suite, name=fields.pop("name", "mini run"), status=status,
                                      item_count=suite.item_count, **fields)  # fmt: skip
    endpoint = None
    for model in targets or ("sim-small",):
        endpoint = endpoint or sim(team, name=f"sim-{run.pk}")
        BenchmarkTarget.objects.create(run=run, endpoint=endpoint, model=model)
    return run


def answer(run, target, index, *, extracted: str = "", error: str = "", text: str = "", **fields) -> BenchmarkAnswer:
    item = BenchmarkItem.objects.get(suite=run.suite, split="test", index=index)
    correct = None if error else (extracted == item.answer)
    return BenchmarkAnswer.objects.create(
        run=run, target=target, item=item, content=text or f"The answer is ({extracted})", extracted=extracted,
        correct=correct, error_code=error, error_message="boom" if error else "", input_tokens=None if error else 50,
        output_tokens=None if error else 8, latency_ms=None if error else 120.0 + index, cost_usd=None, **fields,
    )  # fmt: skip


def scored_run(team, *, status=RunStatus.COMPLETED) -> BenchmarkRun:
    """Two targets over the 6 items. small: 0–3 correct, 4 wrong, 5 no answer (4 of 6, law 3/3, math 1/3);
    large: 0–2 correct, 3 failed, 4–5 wrong (3 of 5 scored, law 3/3, math 0/2)."""
    run = run_for(team, status=status, targets=("sim-small", "sim-large"))
    small, large = run.targets.order_by("id")
    for i in range(4):
        answer(run, small, i, extracted="ABCD"[i % 4])
    answer(run, small, 4, extracted="B")
    answer(run, small, 5, extracted="", text="I cannot tell.")
    for i in range(3):
        answer(run, large, i, extracted="ABCD"[i % 4])
    answer(run, large, 3, error="timeout")
    answer(run, large, 4, extracted="C")
    answer(run, large, 5, extracted="A")
    BenchmarkRun.objects.filter(pk=run.pk).update(completed_answers=12, failed_answers=1)
    run.refresh_from_db()
    return run


@pytest.fixture
def queued(monkeypatch):
    """The chunks benchmark_run_start queues, recorded instead of queued."""
    calls: list[tuple] = []
    monkeypatch.setattr("apps.benchmarks.services.job_submit", lambda **kw: calls.append((kw["func"], *kw["args"])))
    return calls


# --- suites ------------------------------------------------------------------------------------------------------


class TestSuiteList:
    def test_it_lists_the_teams_suites_filtered_by_kind_and_name(self, viewer_api, team, other_team):
        mine = suite_for(team, name="MMLU mini")
        gsm = suite_for(team, name="GSM tiny")
        BenchmarkSuite.objects.filter(pk=gsm.pk).update(kind=Kind.GSM8K)
        suite_for(other_team, name="MMLU theirs")
        data = viewer_api.get(SUITES).json()
        assert {row["id"] for row in data["results"]} == {mine.pk, gsm.pk}
        assert [r["id"] for r in viewer_api.get(f"{SUITES}?kind=gsm8k").json()["results"]] == [gsm.pk]
        assert [r["id"] for r in viewer_api.get(f"{SUITES}?name=mini").json()["results"]] == [mine.pk]
        row = next(r for r in data["results"] if r["id"] == mine.pk)
        assert row["kind_label"] == "MMLU" and row["item_count"] == 6 and "task" not in row

    def test_it_runs_a_constant_number_of_queries(self, viewer_api, team, django_assert_max_num_queries):
        suite_for(team, name="first")
        viewer_api.get(SUITES)  # the token's first use writes last_used_at once
        with CaptureQueriesContext(connection) as few:
            assert viewer_api.get(SUITES).status_code == 200
        for i in range(6):
            suite_for(team, name=f"more{i}")
        with django_assert_max_num_queries(len(few.captured_queries)):
            assert len(viewer_api.get(SUITES).json()["results"]) == 7

    def test_a_bad_kind_is_400_and_anonymous_401(self, viewer_api, anon_api):
        response = viewer_api.get(f"{SUITES}?kind=squad")
        assert response.status_code == 400 and problems(response) == {"kind"}
        assert anon_api.get(SUITES).status_code == 401


class TestSuiteImport:
    def test_a_member_imports_a_gsm8k_file_then_its_next_version(self, member_api, team, member):
        upload = gsm8k_jsonl(gsm8k_items(5))
        response = member_api.post(SUITES, {"name": "GSM8K", "files": [_file("test.jsonl", upload)],
                                            "description": "five"}, format="multipart")  # fmt: skip
        assert response.status_code == 201, response.json()
        data = response.json()
        assert data["kind"] == "gsm8k" and data["item_count"] == 5 and data["version"] == 1
        assert data["description"] == "five" and data["task"] and data["created_by"] == member.username
        again = member_api.post(SUITES, {"name": "GSM8K", "files[]": [_file("test.jsonl", upload)]},
                                format="multipart")  # fmt: skip
        assert again.status_code == 201 and again.json()["version"] == 2
        assert BenchmarkSuite.objects.filter(team=team, name="GSM8K").count() == 2

    def test_mmlu_csvs_per_subject_with_fewshot_files(self, member_api, team):
        files = [_file(f"{s}_test.csv", mmlu_csv(mmlu_items(4, subjects=(s,), seed=i)))
                 for i, s in enumerate(("anatomy", "astronomy"))]  # fmt: skip
        fewshot = [_file("anatomy_dev.csv", mmlu_csv(mmlu_items(3, subjects=("anatomy",), seed=9)))]
        response = member_api.post(SUITES, {"name": "MMLU", "kind": "mmlu", "files": files,
                                            "fewshot_files": fewshot}, format="multipart")  # fmt: skip
        assert response.status_code == 201, response.json()
        data = response.json()
        assert data["item_count"] == 8 and data["fewshot_count"] == 3
        assert data["subjects"] == {"anatomy": 4, "astronomy": 4}

    def test_a_bad_row_is_a_400_naming_file_row_and_field_and_nothing_is_stored(self, member_api, team):
        lines = b'{"question": "1+1?", "answer": "2\\n#### 2"}\n{"question": "2+2?", "answer": "four"}\n'
        response = member_api.post(SUITES, {"name": "bad", "files": [_file("bad.jsonl", lines)]}, format="multipart")
        assert response.status_code == 400 and problems(response) == {"files"}, response.json()
        text = " ".join(response.json()["files"])
        assert "row 2" in text and "answer" in text
        assert not BenchmarkSuite.objects.filter(team=team).exists()

    @pytest.mark.parametrize(
        ("fields", "field"),
        [({"name": "x"}, "files"), ({"files": "not a file"}, "files"), ({"name": "", "files": "F"}, "name"),
         ({"name": "x", "kind": "squad", "files": "F"}, "kind")],
    )  # fmt: skip
    def test_a_malformed_form_is_a_400_naming_the_field(self, member_api, fields, field):
        body = {k: ([_file("t.jsonl", gsm8k_jsonl(gsm8k_items(2)))] if v == "F" else v) for k, v in fields.items()}
        response = member_api.post(SUITES, body, format="multipart")
        assert response.status_code == 400 and field in problems(response), response.json()

    def test_a_viewer_cannot_import_and_anonymous_is_401(self, viewer_api, anon_api, team):
        body = {"name": "GSM8K", "files": [_file("test.jsonl", gsm8k_jsonl(gsm8k_items(2)))]}
        assert viewer_api.post(SUITES, body, format="multipart").status_code == 403
        assert anon_api.post(SUITES, body, format="multipart").status_code == 401
        assert not BenchmarkSuite.objects.exists()


def _file(name: str, content: bytes):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, content, content_type="application/octet-stream")


class TestSuiteDetail:
    def test_it_shows_the_task_definition_and_subjects(self, viewer_api, team):
        suite = suite_for(team)
        run_for(team, suite)
        data = viewer_api.get(f"{SUITES}/{suite.pk}").json()
        assert data["task"] == {"template": "mmlu-chat", "extraction": "letter"}
        assert data["subjects"] == {"law": 3, "math": 3} and data["run_count"] == 1

    def test_another_teams_suite_is_404_and_anonymous_401(self, member_api, anon_api, team, other_team):
        assert member_api.get(f"{SUITES}/{suite_for(other_team).pk}").status_code == 404
        assert anon_api.get(f"{SUITES}/{suite_for(team).pk}").status_code == 401


class TestSuiteDelete:
    def test_a_member_deletes_a_suite_without_runs(self, member_api, team):
        suite = suite_for(team)
        assert member_api.delete(f"{SUITES}/{suite.pk}").status_code == 204
        assert not BenchmarkSuite.objects.filter(pk=suite.pk).exists()
        assert not BenchmarkItem.objects.filter(suite_id=suite.pk).exists()

    def test_a_suite_with_runs_is_409(self, member_api, team):
        suite = suite_for(team)
        run_for(team, suite)
        response = member_api.delete(f"{SUITES}/{suite.pk}")
        assert response.status_code == 409 and response.json()["detail"]
        assert BenchmarkSuite.objects.filter(pk=suite.pk).exists()

    def test_viewer_anonymous_and_other_team_cannot_delete(self, viewer_api, anon_api, member_api, team, other_team):
        mine, theirs = suite_for(team), suite_for(other_team)
        assert viewer_api.delete(f"{SUITES}/{mine.pk}").status_code == 403
        assert anon_api.delete(f"{SUITES}/{mine.pk}").status_code == 401
        assert member_api.delete(f"{SUITES}/{theirs.pk}").status_code == 404
        assert BenchmarkSuite.objects.count() == 2


class TestAnswerKey:
    def test_a_viewer_downloads_the_test_answers_as_json_lines(self, viewer_api, team):
        suite = suite_for(team, fewshot=2)
        response = viewer_api.get(f"{SUITES}/{suite.pk}/answer-key")
        assert response.status_code == 200 and response["Content-Type"] == "application/jsonl"
        assert "answer-key.jsonl" in response["Content-Disposition"]
        rows = [json.loads(line) for line in b"".join(response).decode().splitlines()]
        assert [(r["index"], r["answer"], r["subject"]) for r in rows] == [
            (i, "ABCD"[i % 4], s) for i, s in enumerate(SUBJECTS)
        ]  # the few-shot examples are not in it
        assert rows[0]["question"] == "Question 0?" and rows[0]["choices"] == ["w", "x", "y", "z"]

    def test_another_teams_key_is_404_and_anonymous_401(self, member_api, anon_api, team, other_team):
        assert member_api.get(f"{SUITES}/{suite_for(other_team).pk}/answer-key").status_code == 404
        assert anon_api.get(f"{SUITES}/{suite_for(team).pk}/answer-key").status_code == 401


class TestSuiteItems:
    def test_items_are_paged_and_filtered_by_subject_and_split(self, viewer_api, team):
        suite = suite_for(team, fewshot=2)
        data = viewer_api.get(f"{SUITES}/{suite.pk}/items?page_size=4").json()
        assert data["count"] == 6 and [r["index"] for r in data["results"]] == [0, 1, 2, 3]
        assert data["results"][1]["answer"] == "B" and data["results"][1]["split"] == "test"
        math = viewer_api.get(f"{SUITES}/{suite.pk}/items?subject=math").json()
        assert [r["index"] for r in math["results"]] == [3, 4, 5]
        shots = viewer_api.get(f"{SUITES}/{suite.pk}/items?split=fewshot").json()
        assert shots["count"] == 2 and {r["split"] for r in shots["results"]} == {"fewshot"}

    def test_bad_filters_are_400_and_other_teams_404(self, viewer_api, anon_api, team, other_team):
        suite = suite_for(team)
        response = viewer_api.get(f"{SUITES}/{suite.pk}/items?split=train")
        assert response.status_code == 400 and problems(response) == {"split"}
        assert viewer_api.get(f"{SUITES}/{suite_for(other_team).pk}/items").status_code == 404
        assert anon_api.get(f"{SUITES}/{suite.pk}/items").status_code == 401


# --- runs --------------------------------------------------------------------------------------------------------


def run_body(team, of: BenchmarkSuite | None = None, **fields) -> dict:
    suite = of or suite_for(team)
    endpoint = sim(team, name=f"api-sim-{ProviderEndpoint.objects.count()}")
    return {"suite": suite.pk, "targets": [{"endpoint": endpoint.pk, "model": "sim-small"}], "name": "api run"} | fields


class TestRunCreate:
    def test_a_member_creates_a_pending_run_with_its_targets_and_estimate(self, member_api, team, member):
        variant = ModelVariantFactory(team=team)
        body = run_body(team, concurrency=4, subset_size=4, subset_seed=3)
        body["targets"][0]["variant"] = variant.pk
        response = member_api.post(RUNS, body, format="json")
        assert response.status_code == 201, response.json()
        data = response.json()
        run = BenchmarkRun.objects.get(pk=data["id"])
        assert run.team == team and run.created_by == member and run.status == RunStatus.PENDING
        assert run.item_count == 4 and run.concurrency == 4 and data["estimate"]["requests"] == 4
        assert [(t["model"], t["variant"]) for t in data["targets"]] == [("sim-small", variant.pk)]
        assert ServedVariant.objects.filter(variant=variant, model="sim-small").exists()
        assert data["progress"]["status"] == "pending" and data["progress"]["total"] == 4

    def test_start_true_queues_it(self, member_api, team, queued, django_capture_on_commit_callbacks):
        with django_capture_on_commit_callbacks(execute=True):
            response = member_api.post(RUNS, run_body(team, start=True), format="json")
        assert response.status_code == 201 and response.json()["status"] == "queued"
        assert [call[1] for call in queued] == [response.json()["id"]]

    def test_a_viewer_cannot_create_and_anonymous_is_401(self, viewer_api, anon_api, team):
        body = run_body(team)
        assert viewer_api.post(RUNS, body, format="json").status_code == 403
        assert anon_api.post(RUNS, body, format="json").status_code == 401
        assert not BenchmarkRun.objects.exists()

    def test_another_teams_suite_endpoint_and_variant_are_refused(self, member_api, team, other_team):
        theirs = sim(other_team, name="theirs")
        for field, body in (
            ("suite", run_body(team, of=suite_for(other_team))),
            ("targets", run_body(team, targets=[{"endpoint": theirs.pk, "model": "sim-small"}])),
            ("targets", run_body(team, targets=[{"endpoint": sim(team, "mine").pk, "model": "sim-small",
                                                 "variant": ModelVariantFactory(team=other_team).pk}])),
        ):  # fmt: skip
            response = member_api.post(RUNS, body, format="json")
            assert response.status_code == 400 and problems(response) == {field}, response.json()
        assert not BenchmarkRun.objects.filter(team=team).exists()

    @pytest.mark.parametrize(
        ("fields", "field"),
        [
            ({"suite": 10**9}, "suite"), ({"suite": "x"}, "suite"), ({"targets": []}, "targets"),
            ({"targets": [{"model": "sim-small"}]}, "targets"), ({"shots": 26}, "shots"), ({"shots": 3}, "shots"),
            ({"temperature": -1}, "temperature"), ({"temperature": "hot"}, "temperature"),
            ({"max_tokens": 0}, "max_tokens"), ({"concurrency": 0}, "concurrency"),
            ({"concurrency": 1000}, "concurrency"), ({"subset_size": 0}, "subset_size"),
            ({"subset_size": 6}, "subset_size"), ({"subset_seed": -1}, "subset_seed"),
            ({"name": "n" * 201}, "name"),
        ],
    )  # fmt: skip
    def test_bad_settings_are_400s_naming_the_field(self, member_api, team, fields, field):
        response = member_api.post(RUNS, run_body(team, **fields), format="json")
        assert response.status_code == 400 and field in problems(response), response.json()
        assert not BenchmarkRun.objects.exists()

    def test_a_model_the_endpoint_does_not_serve_names_its_target(self, member_api, team):
        body = run_body(team)
        body["targets"][0]["model"] = "gpt-9"
        response = member_api.post(RUNS, body, format="json")
        assert response.status_code == 400 and problems(response) == {"targets[0].model"}, response.json()

    def test_a_body_that_is_not_an_object_is_400(self, member_api):
        assert member_api.post(RUNS, [1, 2], format="json").status_code == 400


class TestEstimate:
    def test_it_answers_the_figures_and_stores_nothing(self, member_api, team):
        body = run_body(team, subset_size=4)
        body["targets"][0]["variant"] = ModelVariantFactory(team=team).pk
        response = member_api.post(f"{RUNS}/estimate", body, format="json")
        assert response.status_code == 200, response.json()
        data = response.json()
        assert data["item_count"] == 4 and data["requests"] == 4 and data["cost_usd"] is None
        assert data["input_tokens"] > 0 and data["duration_s"] > 0 and len(data["per_target"]) == 1
        assert not BenchmarkRun.objects.exists() and not BenchmarkTarget.objects.exists()
        assert not ServedVariant.objects.exists()

    def test_bad_input_viewer_and_anonymous(self, member_api, viewer_api, anon_api, team):
        response = member_api.post(f"{RUNS}/estimate", run_body(team, concurrency=0), format="json")
        assert response.status_code == 400 and problems(response) == {"concurrency"}
        assert viewer_api.post(f"{RUNS}/estimate", run_body(team), format="json").status_code == 403
        assert anon_api.post(f"{RUNS}/estimate", run_body(team), format="json").status_code == 401


class TestRunList:
    def test_it_lists_the_teams_runs_filtered_by_status_and_suite(self, viewer_api, team, other_team):
        done = scored_run(team)
        other_suite = suite_for(team, name="other")
        pending = run_for(team, other_suite, name="pending")
        run_for(other_team, name="theirs")
        data = viewer_api.get(RUNS).json()
        assert [r["id"] for r in data["results"]] == [pending.pk, done.pk]
        assert "progress" not in data["results"][0] and len(data["results"][1]["targets"]) == 2
        assert [r["id"] for r in viewer_api.get(f"{RUNS}?status=completed").json()["results"]] == [done.pk]
        assert [r["id"] for r in viewer_api.get(f"{RUNS}?suite={other_suite.pk}").json()["results"]] == [pending.pk]
        for query in ("status=bogus", "suite=x", "suite=1.5", f"suite={10**30}"):
            assert viewer_api.get(f"{RUNS}?{query}").status_code == 400, query

    def test_anonymous_is_401(self, anon_api):
        assert anon_api.get(RUNS).status_code == 401

    def test_it_runs_a_constant_number_of_queries(self, viewer_api, team, django_assert_max_num_queries):
        suite = suite_for(team)
        for i in range(2):
            run_for(team, suite, name=f"r{i}", targets=("sim-small", "sim-large"))
        viewer_api.get(RUNS)  # the token's first use writes last_used_at once
        with CaptureQueriesContext(connection) as few:
            assert viewer_api.get(RUNS).status_code == 200
        for i in range(8):
            run_for(team, suite, name=f"more{i}", targets=("sim-small", "sim-large"))
        with django_assert_max_num_queries(len(few.captured_queries)):
            assert len(viewer_api.get(RUNS).json()["results"]) == 10


def expected(correct: int, n: int, no_answer: int) -> dict:
    acc = stats.accuracy(correct, n, no_answer)
    return {"n": n, "correct": correct, "no_answer": no_answer, "accuracy_pct": pytest.approx(acc.accuracy * 100),
            "ci_low_pct": pytest.approx(acc.ci_low * 100), "ci_high_pct": pytest.approx(acc.ci_high * 100),
            "stderr_pct": pytest.approx(acc.stderr * 100),
            "no_answer_pct": pytest.approx(no_answer / n * 100)}  # fmt: skip


class TestRunDetail:
    def test_it_shows_progress_and_results_per_target_and_subject(self, viewer_api, team):
        run = scored_run(team)
        data = viewer_api.get(f"{RUNS}/{run.pk}").json()
        assert data["progress"]["status"] == "completed" and data["progress"]["total"] == 12
        small, large = data["results"]
        assert (small["model"], large["model"]) == ("sim-small", "sim-large")
        assert small["overall"] == expected(4, 6, 1) and large["overall"] == expected(3, 5, 0)
        assert small["overall"]["accuracy_pct"] == pytest.approx(400 / 6)
        assert {s["subject"]: (s["correct"], s["n"]) for s in small["by_subject"]} == {"law": (3, 3), "math": (1, 3)}
        assert {s["subject"]: (s["correct"], s["n"]) for s in large["by_subject"]} == {"law": (3, 3), "math": (0, 2)}
        assert large["failed"] == 1 and small["failed"] == 0
        assert small["input_tokens"] == 300 and small["output_tokens"] == 48 and small["cost_usd"] is None
        assert small["mean_latency_ms"] == pytest.approx(122.5) and small["measured_score_id"] is None
        for target in data["results"]:
            for figures in (target["overall"], *target["by_subject"]):
                assert 0 <= figures["ci_low_pct"] <= figures["accuracy_pct"] <= figures["ci_high_pct"] <= 100

    def test_another_teams_run_is_404_and_anonymous_401(self, member_api, anon_api, team, other_team):
        assert member_api.get(f"{RUNS}/{run_for(other_team).pk}").status_code == 404
        assert anon_api.get(f"{RUNS}/{run_for(team).pk}").status_code == 401


class TestRunActions:
    def test_start_queues_a_pending_run(self, member_api, team, queued, django_capture_on_commit_callbacks):
        run = run_for(team)
        with django_capture_on_commit_callbacks(execute=True):
            response = member_api.post(f"{RUNS}/{run.pk}/start")
        assert response.status_code == 200 and response.json()["status"] == "queued"
        assert [call[1] for call in queued] == [run.pk]

    def test_start_resumes_a_cancelled_run_and_refuses_a_completed_one(self, member_api, team, queued):
        cancelled = run_for(team, status=RunStatus.CANCELLED)
        assert member_api.post(f"{RUNS}/{cancelled.pk}/start").json()["status"] == "queued"
        response = member_api.post(f"{RUNS}/{scored_run(team).pk}/start")
        assert response.status_code == 409 and "completed" in response.json()["detail"]

    def test_cancel_stops_a_queued_run(self, member_api, team):
        run = run_for(team, status=RunStatus.QUEUED)
        response = member_api.post(f"{RUNS}/{run.pk}/cancel")
        assert response.status_code == 200 and response.json()["status"] == "cancelled"
        assert response.json()["cancel_requested"] is True

    @pytest.mark.parametrize("action", ["start", "cancel"])
    def test_a_viewer_cannot_act(self, viewer_api, team, action, queued):
        run = run_for(team, status=RunStatus.CANCELLED if action == "start" else RunStatus.QUEUED)
        before = run.status
        assert viewer_api.post(f"{RUNS}/{run.pk}/{action}").status_code == 403
        run.refresh_from_db()
        assert run.status == before and not queued

    @pytest.mark.parametrize("action", ["start", "cancel"])
    def test_anonymous_and_other_teams_cannot_act(self, anon_api, member_api, other_team, action):
        run = run_for(other_team)
        assert anon_api.post(f"{RUNS}/{run.pk}/{action}").status_code == 401
        assert member_api.post(f"{RUNS}/{run.pk}/{action}").status_code == 404

    def test_actions_answer_only_post(self, member_api, team):
        assert member_api.get(f"{RUNS}/{run_for(team).pk}/start").status_code == 405


class TestRunDelete:
    def test_a_member_deletes_a_finished_run_with_its_answers(self, member_api, team):
        run = scored_run(team)
        assert member_api.delete(f"{RUNS}/{run.pk}").status_code == 204
        assert not BenchmarkRun.objects.filter(pk=run.pk).exists() and not BenchmarkAnswer.objects.exists()

    def test_a_running_run_is_409(self, member_api, team):
        run = run_for(team, status=RunStatus.RUNNING)
        response = member_api.delete(f"{RUNS}/{run.pk}")
        assert response.status_code == 409 and "cancel" in response.json()["detail"]
        assert BenchmarkRun.objects.filter(pk=run.pk).exists()

    def test_viewer_anonymous_and_other_team_cannot_delete(self, viewer_api, anon_api, member_api, team, other_team):
        mine, theirs = run_for(team), run_for(other_team)
        assert viewer_api.delete(f"{RUNS}/{mine.pk}").status_code == 403
        assert anon_api.delete(f"{RUNS}/{mine.pk}").status_code == 401
        assert member_api.delete(f"{RUNS}/{theirs.pk}").status_code == 404
        assert BenchmarkRun.objects.count() == 2


class TestRunAnswers:
    def test_answers_are_paged_and_filtered_by_target_subject_and_outcome(self, viewer_api, team):
        run = scored_run(team)
        small, large = run.targets.order_by("id")
        url = f"{RUNS}/{run.pk}/items"
        data = viewer_api.get(f"{url}?page_size=5").json()
        assert data["count"] == 12 and len(data["results"]) == 5
        first = data["results"][0]
        assert first["item_index"] == 0 and first["correct_answer"] == "A" and first["question"] == "Question 0?"

        def indices(query: str) -> list[tuple[int, int]]:
            rows = viewer_api.get(f"{url}?{query}").json()["results"]
            return [(r["target"], r["item_index"]) for r in rows]

        assert indices(f"target={small.pk}&outcome=correct") == [(small.pk, i) for i in range(4)]
        assert indices("outcome=no_answer") == [(small.pk, 5)]
        assert indices("outcome=failed") == [(large.pk, 3)]
        assert indices("outcome=wrong") == [(small.pk, 4), (large.pk, 4), (large.pk, 5)]
        assert indices(f"subject=math&target={large.pk}") == [(large.pk, 3), (large.pk, 4), (large.pk, 5)]
        failed = viewer_api.get(f"{url}?outcome=failed").json()["results"][0]
        assert failed["correct"] is None and failed["error_code"] == "timeout" and failed["no_answer"] is False

    def test_bad_filters_are_400s_naming_the_parameter(self, viewer_api, team, other_team):
        run = scored_run(team)
        another = scored_run(team).targets.first()
        for query, field in (("outcome=maybe", "outcome"), ("target=x", "target"), (f"target={another.pk}", "target"),
                             (f"target={10**30}", "target")):  # fmt: skip
            response = viewer_api.get(f"{RUNS}/{run.pk}/items?{query}")
            assert response.status_code == 400 and problems(response) == {field}, query

    def test_other_teams_404_and_anonymous_401(self, viewer_api, anon_api, team, other_team):
        assert viewer_api.get(f"{RUNS}/{run_for(other_team).pk}/items").status_code == 404
        assert anon_api.get(f"{RUNS}/{run_for(team).pk}/items").status_code == 401


def events(response) -> list[dict]:
    text = b"".join(response).decode()
    assert text.startswith("event: progress\n")
    return [json.loads(block.split("data: ", 1)[1]) for block in text.strip().split("\n\n")]


class TestProgressStream:
    def test_a_finished_run_sends_one_event_with_its_progress(self, viewer_api, team):
        run = scored_run(team)
        response = viewer_api.get(f"{RUNS}/{run.pk}/progress")
        assert response.status_code == 200 and response["Content-Type"] == "text/event-stream"
        (payload,) = events(response)
        assert payload["status"] == "completed" and payload["completed"] == 12 and payload["total"] == 12
        assert [t["correct"] for t in payload["targets"]] == [4, 3]

    def test_a_running_run_streams_until_the_time_limit(self, member_api, team, monkeypatch):
        monkeypatch.setattr("llmbench.sse.SSE_MAX_S", 0)  # one event, then the stream ends
        run = scored_run(team, status=RunStatus.RUNNING)
        (payload,) = events(member_api.get(f"{RUNS}/{run.pk}/progress"))
        assert payload["status"] == "running" and payload["targets"][1]["failed"] == 1

    def test_it_refuses_anonymous_and_other_teams_and_answers_get_only(self, anon_api, member_api, team, other_team):
        theirs = run_for(other_team, status=RunStatus.COMPLETED)
        anonymous = anon_api.get(f"{RUNS}/{theirs.pk}/progress")
        assert anonymous.status_code == 401 and anonymous["WWW-Authenticate"] == "Token"
        missing = member_api.get(f"{RUNS}/{theirs.pk}/progress")
        assert missing.status_code == 404 and missing.json()["detail"]
        assert member_api.post(f"{RUNS}/{run_for(team).pk}/progress").status_code == 405


@pytest.fixture(scope="module")
def openapi() -> dict:
    """The document /api/schema/?format=json serves."""
    return json.loads(OpenApiJsonRenderer().render(SchemaGenerator().get_schema(request=None, public=True)))


class TestAnswersMatchTheSchema:
    """The real answers validate against what /api/schema/ documents for them (the fuzz test checks generated
    requests; these check a run with results, a failed answer and an estimate)."""

    def test_run_detail_list_answers_and_progress(self, openapi, member_api, team):
        run = scored_run(team)
        for path, url in (
            ("/api/v1/benchmark-runs/", f"{RUNS}/"),
            ("/api/v1/benchmark-runs/{id}/", f"{RUNS}/{run.pk}/"),
            ("/api/v1/benchmark-runs/{id}/items/", f"{RUNS}/{run.pk}/items/"),
            ("/api/v1/benchmark-runs/{id}/progress", f"{RUNS}/{run.pk}/progress"),
            ("/api/v1/benchmark-runs/{id}/export/", f"{RUNS}/{run.pk}/export/?format=xlsx"),
        ):
            assert_documented(openapi, member_api.get(url), path)

    def test_suites_items_answer_key_and_estimate(self, openapi, member_api, team):
        suite = suite_for(team, fewshot=1)
        for path, url in (
            ("/api/v1/benchmark-suites/", f"{SUITES}/"),
            ("/api/v1/benchmark-suites/{id}/", f"{SUITES}/{suite.pk}/"),
            ("/api/v1/benchmark-suites/{id}/items/", f"{SUITES}/{suite.pk}/items/"),
            ("/api/v1/benchmark-suites/{id}/answer-key/", f"{SUITES}/{suite.pk}/answer-key/"),
        ):
            assert_documented(openapi, member_api.get(url), path)
        upload = {"name": "GSM8K", "files": [_file("test.jsonl", gsm8k_jsonl(gsm8k_items(3)))]}
        assert_documented(openapi, member_api.post(f"{SUITES}/", upload, format="multipart"), "/api/v1/benchmark-suites/",
                          "post")  # fmt: skip
        estimate = member_api.post(f"{RUNS}/estimate/", run_body(team, of=suite), format="json")
        assert_documented(openapi, estimate, "/api/v1/benchmark-runs/estimate/", "post")
        created = member_api.post(f"{RUNS}/", run_body(team, of=suite), format="json")
        assert_documented(openapi, created, "/api/v1/benchmark-runs/", "post")
