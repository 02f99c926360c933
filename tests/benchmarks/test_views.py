"""The benchmark pages: the list, importing a suite, a suite and its items, the new-run form and its estimate, the
live run page (results, what was published, the paired comparison), start / resume / cancel / delete, the answers,
and the websocket; by role and team, problems shown in words next to the field or row they concern."""

import asyncio

import pytest
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from scipy.stats import binomtest

from apps.accounts.models import Membership
from apps.benchmarks.engine import stats
from apps.benchmarks.imports import suite_import
from apps.benchmarks.models import BenchmarkRun, BenchmarkSuite, Kind, Status
from apps.benchmarks.routing import websocket_urlpatterns
from apps.benchmarks.services import benchmark_run_cancel
from apps.scores.models import Score, ServedVariant
from tests.benchmarks import files
from tests.benchmarks.test_api import answer, run_for, scored_run, sim, suite_for
from tests.factories import MembershipFactory, ModelVariantFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def queued(monkeypatch) -> list[tuple]:
    """The chunks benchmark_run_start queues, recorded instead of queued."""
    calls: list[tuple] = []
    monkeypatch.setattr("apps.benchmarks.services.job_submit", lambda **kw: calls.append((kw["func"], *kw["args"])))
    return calls


def upload(name: str, content: bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content, content_type="application/octet-stream")


def page(response) -> str:
    return response.content.decode()


def accuracy_text(correct: int, n: int) -> str:
    figures = stats.accuracy(correct, n)
    return f'{figures.accuracy * 100:.1f}%</strong> <span class="muted">[{figures.ci_low * 100:.1f}%, {figures.ci_high * 100:.1f}%]'


def set_status(run: BenchmarkRun, status: str) -> BenchmarkRun:
    BenchmarkRun.objects.filter(pk=run.pk).update(status=status)
    run.refresh_from_db()
    return run


# --- the list ----------------------------------------------------------------------------------------------------


class TestIndex:
    def test_it_lists_the_teams_suites_and_runs_with_accuracy_when_finished(self, viewer_client, team, other_team):
        done = scored_run(team)
        running = set_status(run_for(team, done.suite, name="still going"), Status.RUNNING)
        BenchmarkRun.objects.filter(pk=running.pk).update(completed_answers=2)
        suite_for(other_team, name="Their suite")
        run_for(other_team, name="their run")
        html = page(viewer_client.get(reverse("benchmarks:index")))
        assert "MMLU mini" in html and "Their suite" not in html and "their run" not in html
        assert html.index("still going") < html.index("mini run")  # newest first
        assert accuracy_text(4, 6) in html  # sim-small: 4 of 6 scored
        assert accuracy_text(3, 5) in html  # sim-large: 3 of 5 (one failed, not scored)
        assert "2 / 6" in html and "12 / 12" in html and "1 failed" in html

    def test_a_viewer_gets_no_buttons_a_member_does(self, client, viewer, member):
        client.force_login(viewer)
        assert "New run" not in page(client.get(reverse("benchmarks:index")))
        client.force_login(member)
        html = page(client.get(reverse("benchmarks:index")))
        assert "Import a benchmark" in html and "New run" in html

    def test_it_filters_suites_by_kind_and_runs_by_status(self, viewer_client, team):
        gsm = suite_for(team, name="GSM tiny")
        BenchmarkSuite.objects.filter(pk=gsm.pk).update(kind=Kind.GSM8K)
        suite_for(team, name="MMLU mini")
        scored_run(team)
        run_for(team, gsm, name="waiting run")
        html = page(viewer_client.get(reverse("benchmarks:index") + "?kind=gsm8k&status=pending"))
        assert "GSM tiny" in html and "MMLU mini</a>" not in html
        assert "waiting run" in html and "mini run" not in html

    def test_a_bad_filter_is_a_400_naming_it(self, viewer_client):
        response = viewer_client.get(reverse("benchmarks:index") + "?status=bogus")
        assert response.status_code == 400 and "Filter “status”" in page(response)

    def test_anonymous_is_sent_to_log_in(self, client):
        response = client.get(reverse("benchmarks:index"))
        assert response.status_code == 302 and "/login/" in response["Location"]

    def test_it_runs_a_constant_number_of_queries(self, member_client, team, django_assert_max_num_queries):
        scored_run(team)
        with CaptureQueriesContext(connection) as few:
            assert member_client.get(reverse("benchmarks:index")).status_code == 200
        for _ in range(4):
            scored_run(team)
            run_for(team, targets=("sim-small", "sim-large"))
        with django_assert_max_num_queries(len(few.captured_queries)):
            assert member_client.get(reverse("benchmarks:index")).status_code == 200


# --- suites ------------------------------------------------------------------------------------------------------


class TestSuiteImport:
    def test_a_member_imports_a_gsm8k_file(self, member_client, team, member):
        response = member_client.post(reverse("benchmarks:suite-import"), {
            "name": "GSM8K test", "kind": "", "description": "the test split",
            "files": [upload("test.jsonl", files.gsm8k_jsonl(files.gsm8k_items(7)))],
        })  # fmt: skip
        suite = BenchmarkSuite.objects.get()
        assert response.status_code == 302 and response["Location"] == reverse(
            "benchmarks:suite-detail", args=[suite.pk]
        )
        assert (suite.team, suite.created_by, suite.kind, suite.item_count) == (team, member, Kind.GSM8K, 7)
        assert "Imported GSM8K test v1 (GSM8K): 7 items." in page(member_client.get(response["Location"]))

    def test_several_files_and_few_shot_files_make_one_suite(self, member_client):
        algebra = files.mmlu_items(4, subjects=("abstract_algebra",))
        anatomy = files.mmlu_items(6, subjects=("anatomy",), seed=1)
        response = member_client.post(reverse("benchmarks:suite-import"), {
            "name": "MMLU", "kind": "mmlu",
            "files": [upload("abstract_algebra_test.csv", files.mmlu_csv(algebra)),
                      upload("anatomy_test.csv", files.mmlu_csv(anatomy))],
            "fewshot_files": [upload("anatomy_dev.csv", files.mmlu_csv(files.mmlu_items(3, subjects=("anatomy",))))],
        })  # fmt: skip
        assert response.status_code == 302
        suite = BenchmarkSuite.objects.get()
        assert suite.item_count == 10 and suite.fewshot_count == 3
        assert suite.subjects == {"abstract_algebra": 4, "anatomy": 6}

    def test_a_bad_row_is_named_and_nothing_is_stored(self, member_client):
        records = files.gsm8k_records(files.gsm8k_items(3))
        records[1]["answer"] = "no final answer here"
        response = member_client.post(reverse("benchmarks:suite-import"), {
            "name": "GSM8K", "files": [upload("broken.jsonl", files.jsonl(records))],
        })  # fmt: skip
        html = page(response)
        assert response.status_code == 400 and not BenchmarkSuite.objects.exists()
        assert "Nothing was imported" in html and "file broken.jsonl, row 2" in html and "answer" in html

    def test_two_benchmarks_in_one_upload_are_refused(self, member_client):
        response = member_client.post(reverse("benchmarks:suite-import"), {
            "name": "mixed", "files": [upload("test.jsonl", files.gsm8k_jsonl(files.gsm8k_items(2))),
                                       upload("mmlu_pro.parquet", files.mmlu_pro_parquet(files.mmlu_pro_items(3)))],
        })  # fmt: skip
        assert response.status_code == 400 and not BenchmarkSuite.objects.exists()
        assert "a suite holds one benchmark" in page(response)

    def test_without_a_file_the_field_says_so(self, member_client):
        response = member_client.post(reverse("benchmarks:suite-import"), {"name": "nothing"})
        assert response.status_code == 400
        assert 'id="field-files"' in page(response) and "This field is required." in page(response)

    def test_a_viewer_may_look_but_not_import(self, viewer_client):
        assert viewer_client.get(reverse("benchmarks:suite-import")).status_code == 200
        response = viewer_client.post(reverse("benchmarks:suite-import"), {
            "name": "x", "files": [upload("test.jsonl", files.gsm8k_jsonl(files.gsm8k_items(2)))],
        })  # fmt: skip
        assert response.status_code == 403 and not BenchmarkSuite.objects.exists()

    def test_anonymous_is_sent_to_log_in(self, client):
        assert "/login/" in client.get(reverse("benchmarks:suite-import"))["Location"]


class TestSuiteDetail:
    def test_it_shows_the_task_definition_subjects_items_and_answer_key(self, viewer_client, team, viewer):
        items = files.mmlu_pro_items(12, categories=("math", "law"), seed=2)
        suite = suite_import(team=team, user=viewer, name="MMLU-Pro", files=[files.build("mmlu_pro", items)])
        html = page(viewer_client.get(reverse("benchmarks:suite-detail", args=[suite.pk])))
        assert "answer is \\(?([A-J])\\)?" in html  # MMLU-Pro's cascade, in order
        assert html.index("tier 1") < html.index("tier 2") < html.index("tier 3")
        assert "Let&#x27;s think step by step." in html and "TIGER-AI-Lab" in html
        assert '<td class="text">law</td><td>6</td>' in html
        assert reverse("benchmarks:item", args=[suite.pk, 0]) in html and items[0].question in html
        assert f"/api/v1/benchmark-suites/{suite.pk}/answer-key" in html

    def test_another_teams_suite_is_404_and_anonymous_log_in(self, viewer_client, client, other_team):
        suite = suite_for(other_team)
        assert viewer_client.get(reverse("benchmarks:suite-detail", args=[suite.pk])).status_code == 404
        client.logout()
        assert "/login/" in client.get(reverse("benchmarks:suite-detail", args=[suite.pk]))["Location"]


class TestSuiteDelete:
    def test_a_member_deletes_a_suite_without_runs(self, member_client, team):
        suite = suite_for(team)
        response = member_client.post(reverse("benchmarks:suite-delete", args=[suite.pk]))
        assert response.status_code == 302 and not BenchmarkSuite.objects.exists()

    def test_a_suite_with_runs_stays_and_says_why(self, member_client, team):
        run = run_for(team)
        response = member_client.post(reverse("benchmarks:suite-delete", args=[run.suite_id]), follow=True)
        assert BenchmarkSuite.objects.filter(pk=run.suite_id).exists()
        assert "This suite has benchmark runs; delete them first." in page(response)

    def test_a_viewer_is_refused_another_team_is_404_get_is_405(self, client, viewer, member, team, other_team):
        mine, theirs = suite_for(team), suite_for(other_team)
        client.force_login(viewer)
        assert client.post(reverse("benchmarks:suite-delete", args=[mine.pk])).status_code == 403
        member_client = client
        client.force_login(member)
        assert member_client.post(reverse("benchmarks:suite-delete", args=[theirs.pk])).status_code == 404
        assert member_client.get(reverse("benchmarks:suite-delete", args=[mine.pk])).status_code == 405
        assert BenchmarkSuite.objects.count() == 2


class TestItem:
    def test_it_marks_the_correct_choice_and_lists_its_answers(self, viewer_client, team):
        run = scored_run(team)
        html = page(viewer_client.get(reverse("benchmarks:item", args=[run.suite_id, 1])))
        assert "Question 1?" in html
        assert '<li class="correct" aria-label="correct answer"><span class="letter">B.</span>x' in html
        assert html.count('data-outcome="correct"') == 2  # both targets answered B
        assert reverse("benchmarks:item", args=[run.suite_id, 2]) in html  # the next item

    def test_an_item_past_the_end_and_another_teams_are_404(self, viewer_client, team, other_team):
        assert viewer_client.get(reverse("benchmarks:item", args=[suite_for(team).pk, 6])).status_code == 404
        assert viewer_client.get(reverse("benchmarks:item", args=[suite_for(other_team).pk, 0])).status_code == 404


# --- the new-run form --------------------------------------------------------------------------------------------


def run_data(team, of=None, **fields) -> dict:
    suite = of or suite_for(team, subjects=("law",) * 6, fewshot=2)
    endpoint = sim(team, name=f"form-sim-{BenchmarkSuite.objects.count()}-{len(fields)}")
    return {
        "suite": suite.pk, "name": "page run", "target": [f"{endpoint.pk}:sim-small"], "variant": [""],
        "shots": "0", "temperature": "0", "max_tokens": "", "concurrency": "4", "subset_size": "", "subset_seed": "0",
    } | fields  # fmt: skip


class TestRunCreate:
    def test_the_form_offers_the_teams_suites_endpoints_and_linked_variants(self, member_client, team, other_team):
        suite = suite_for(team)
        endpoint = sim(team, name="ours")
        sim(other_team, name="theirs")
        variant = ModelVariantFactory(team=team, model_name="org/small", quantization="AWQ")
        ServedVariant.objects.create(team=team, endpoint=endpoint, model="sim-small", variant=variant)
        html = page(member_client.get(reverse("benchmarks:run-create") + f"?suite={suite.pk}"))
        assert f'<option value="{suite.pk}" selected>' in html and 'value="256"' in html  # MMLU's default
        assert "ours · sim-small" in html and "theirs" not in html
        assert f'"{endpoint.pk}:sim-small": {variant.pk}' in html  # the link the script preselects

    def test_another_teams_suite_is_not_preselected(self, member_client, other_team):
        theirs = suite_for(other_team, name="Theirs")
        html = page(member_client.get(reverse("benchmarks:run-create") + f"?suite={theirs.pk}"))
        assert "Theirs" not in html

    def test_a_member_creates_and_starts_a_run_of_two_targets(
        self,
        member_client,
        team,
        member,
        queued,
        django_capture_on_commit_callbacks,
    ):
        suite = suite_for(team)
        endpoint = sim(team, name="two models")
        awq = ModelVariantFactory(team=team, model_name="org/m", quantization="AWQ")
        data = run_data(team, suite, target=[f"{endpoint.pk}:sim-small", f"{endpoint.pk}:sim-large"],
                        variant=[str(awq.pk), ""], start="1", subset_size="4", subset_seed="3")  # fmt: skip
        with django_capture_on_commit_callbacks(execute=True):
            response = member_client.post(reverse("benchmarks:run-create"), data)
        run = BenchmarkRun.objects.get()
        assert response.status_code == 302 and response["Location"] == reverse("benchmarks:run-detail", args=[run.pk])
        assert (run.created_by, run.status, run.item_count, run.concurrency, run.subset_seed) == (
            member,
            Status.QUEUED,
            4,
            4,
            3,
        )
        assert [(t.model, t.variant_id) for t in run.targets.order_by("id")] == [
            ("sim-small", awq.pk),
            ("sim-large", None),
        ]
        assert run.max_tokens == 256 and queued == [("apps.benchmarks.tasks.benchmark_run_chunk", run.pk, "")]

    def test_create_without_start_leaves_it_pending(self, member_client, team, queued):
        response = member_client.post(reverse("benchmarks:run-create"), run_data(team))
        assert response.status_code == 302 and BenchmarkRun.objects.get().status == Status.PENDING and not queued

    def test_the_preview_shows_the_estimate_and_stores_nothing(self, member_client, team):
        suite = suite_for(team)
        endpoint = sim(team, name="priced", price_input_per_1m_usd=1.0, price_output_per_1m_usd=2.0)
        data = run_data(team, suite, target=[f"{endpoint.pk}:sim-small", f"{endpoint.pk}:sim-large"], preview="1")
        response = member_client.post(reverse("benchmarks:run-create"), data)
        html = page(response)
        assert response.status_code == 200 and html.lstrip().startswith('<section id="estimate"')
        assert '<strong id="estimate-requests">12</strong>' in html and "$" in html and "Assuming" in html
        assert not BenchmarkRun.objects.exists() and not ServedVariant.objects.exists()

    def test_the_preview_of_an_unfinished_form_says_what_is_missing(self, member_client, team):
        response = member_client.post(reverse("benchmarks:run-create"), run_data(team, target=[], variant=[],
                                                                                 preview="1"))  # fmt: skip
        assert response.status_code == 200
        assert "Choose at least one endpoint and model to ask." in page(response)

    @pytest.mark.parametrize(
        ("fields", "where", "shown"),
        [
            ({"shots": "5"}, 'id="field-shots"', "At most 2 few-shot examples are available per subject"),
            ({"subset_size": "6"}, 'id="field-subset_size"', "Must be below the suite&#x27;s 6 items"),
            ({"temperature": "hot"}, 'id="field-temperature"', "Enter a number."),
            ({"concurrency": "0"}, 'id="field-concurrency"', "Ensure this value is greater than or equal to 1."),
            ({"target": ["999999:sim-small"]}, "data-target-row", "Choose one of the team&#x27;s endpoints"),
            ({"target": [], "variant": []}, 'id="target-errors"', "Choose at least one endpoint and model to ask."),
            ({"variant": ["999999"]}, "data-target-row", "Choose one of the team&#x27;s model variants."),
            ({"suite": "999999"}, 'id="field-suite"', "Select a valid choice."),
        ],
    )  # fmt: skip
    def test_problems_are_shown_next_to_their_field_or_row(self, member_client, team, fields, where, shown):
        response = member_client.post(reverse("benchmarks:run-create"), run_data(team, **fields))
        html = page(response)
        assert response.status_code == 400 and not BenchmarkRun.objects.exists()
        assert shown in html and html.index(where) < html.index(shown)

    def test_a_model_the_endpoint_does_not_serve_is_named_on_its_row(self, member_client, team):
        endpoint = sim(team, name="narrow", models=("only-this",))
        data = run_data(team, target=[f"{endpoint.pk}:only-this", f"{endpoint.pk}:other"], variant=["", ""])
        html = page(member_client.post(reverse("benchmarks:run-create"), data))
        shown = "Model: narrow does not serve “other” (it serves: only-this)."
        second_row = html.index("data-target-row", html.index("data-target-row") + 1)
        assert shown in html and html.index(shown) > second_row

    def test_another_teams_suite_cannot_be_chosen(self, member_client, team, other_team):
        response = member_client.post(reverse("benchmarks:run-create"), run_data(team, suite=suite_for(other_team).pk))
        assert response.status_code == 400 and "Select a valid choice." in page(response)

    def test_a_viewer_may_look_but_not_create(self, viewer_client, team):
        assert viewer_client.get(reverse("benchmarks:run-create")).status_code == 200
        assert viewer_client.post(reverse("benchmarks:run-create"), run_data(team)).status_code == 403
        assert not BenchmarkRun.objects.exists()

    def test_anonymous_is_sent_to_log_in(self, client):
        assert "/login/" in client.get(reverse("benchmarks:run-create"))["Location"]


# --- the run page ------------------------------------------------------------------------------------------------


class TestRunDetail:
    def test_a_pending_run_offers_start_to_a_member_only(self, client, member, viewer, team):
        run = run_for(team)
        client.force_login(member)
        html = page(client.get(reverse("benchmarks:run-detail", args=[run.pk])))
        assert 'id="start-button"' in html and "not started" in html and "0 of 6 answers" in html
        assert f"/ws/benchmark-runs/{run.pk}/" in html
        client.force_login(viewer)
        assert 'id="start-button"' not in page(client.get(reverse("benchmarks:run-detail", args=[run.pk])))

    def test_a_running_run_shows_accuracy_so_far(self, viewer_client, team):
        run = set_status(run_for(team), Status.RUNNING)
        target = run.targets.get()
        answer(run, target, 0, extracted="A")
        answer(run, target, 1, extracted="C")
        BenchmarkRun.objects.filter(pk=run.pk).update(completed_answers=2)
        html = page(viewer_client.get(reverse("benchmarks:run-detail", args=[run.pk])))
        assert 'id="so-far-table"' in html and "50.0%" in html and "2 / 6" in html and "2 of 6 answers" in html

    def test_a_finished_run_shows_results_per_target_and_subject(self, viewer_client, team):
        run = scored_run(team)
        html = page(viewer_client.get(reverse("benchmarks:run-detail", args=[run.pk])))
        assert accuracy_text(4, 6) in html and accuracy_text(3, 5) in html
        assert f"±{stats.accuracy(4, 6).stderr * 100:.1f}%" in html
        assert '1 <span class="muted">(16.7%)</span>' in html  # sim-small: one response without an answer
        assert 'id="subject-table"' in html and ">law</td>" in html and ">math</td>" in html
        assert "not published as a measured score: the target is not linked to a catalog variant" in html
        for fmt in ("csv", "xlsx", "json"):
            assert reverse("benchmarks:run-export", args=[run.pk, fmt]) in html

    def test_a_subset_run_says_why_it_was_not_published(self, viewer_client, team):
        run = scored_run(team)
        BenchmarkRun.objects.filter(pk=run.pk).update(subset_size=6)
        html = page(viewer_client.get(reverse("benchmarks:run-detail", args=[run.pk])))
        assert "it asked a subset of 6 items (only a full run is published)" in html
        assert "1 request failed (resume the run to ask them again)" in html

    def test_a_published_score_is_linked(self, viewer_client, team):
        run = scored_run(team)
        small = run.targets.order_by("id").first()
        variant = ModelVariantFactory(team=team, model_name="org/small", quantization="BF16")
        small.variant = variant
        small.save()
        Score.objects.create(team=team, variant=variant, benchmark=run.suite.benchmark, value_pct=66.7,
                             origin=Score.Origin.MEASURED, provenance={"run_id": run.pk, "target_id": small.pk})  # fmt: skip
        html = page(viewer_client.get(reverse("benchmarks:run-detail", args=[run.pk])))
        assert "published as the measured score of" in html and reverse("scores:variant", args=[variant.pk]) in html

    def test_a_score_replaced_by_a_later_run_says_so(self, viewer_client, team):
        run = scored_run(team)
        BenchmarkRun.objects.filter(pk=run.pk).update(failed_answers=0)
        run.answers.filter(error_code="timeout").delete()
        small = run.targets.order_by("id").first()
        small.variant = ModelVariantFactory(team=team)
        small.save()
        Score.objects.create(team=team, variant=small.variant, benchmark=run.suite.benchmark, value_pct=50.0,
                             origin=Score.Origin.MEASURED, provenance={"run_id": run.pk + 1, "target_id": 1})  # fmt: skip
        html = page(viewer_client.get(reverse("benchmarks:run-detail", args=[run.pk])))
        assert "a later run of this variant has replaced its measured score" in html

    def test_two_targets_are_compared_on_the_same_items(self, viewer_client, team):
        run = scored_run(team)  # item 3: right for sim-small, failed (not right) for sim-large; 4, 5 wrong for both
        html = page(viewer_client.get(reverse("benchmarks:run-detail", args=[run.pk])))
        p_value = binomtest(1, 1, 0.5).pvalue
        small, large = (f"{t.endpoint.name} · {t.model}" for t in run.targets.order_by("id"))
        assert f"{large} loses 16.7 points against {small}" in html
        assert f"McNemar p = {p_value:.3f}, 1 item flipped." in html
        assert f'href="{reverse("benchmarks:item", args=[run.suite_id, 3])}">#3</a>' in html

    def test_the_full_precision_variant_is_the_base_of_the_comparison(self, viewer_client, team):
        run = scored_run(team)
        small, large = run.targets.order_by("id")
        small.variant = ModelVariantFactory(team=team, model_name="org/m", quantization="AWQ")
        large.variant = ModelVariantFactory(team=team, model_name="org/m", quantization="BF16")
        small.save()
        large.save()
        html = page(viewer_client.get(reverse("benchmarks:run-detail", args=[run.pk])))
        assert "org/m · AWQ gains 16.7 points against org/m · BF16" in html

    def test_the_live_partial_is_the_live_section_only(self, viewer_client, team):
        run = scored_run(team)
        html = page(viewer_client.get(reverse("benchmarks:run-live", args=[run.pk])))
        assert html.lstrip().startswith('<section id="run-live"') and "<html" not in html and "Results" in html

    def test_another_teams_run_is_404_and_anonymous_log_in(self, viewer_client, client, other_team):
        run = run_for(other_team)
        for name in ("run-detail", "run-live", "run-answers"):
            assert viewer_client.get(reverse(f"benchmarks:{name}", args=[run.pk])).status_code == 404
        client.logout()
        for name in ("run-detail", "run-live", "run-answers"):
            assert "/login/" in client.get(reverse(f"benchmarks:{name}", args=[run.pk]))["Location"]


class TestRunActions:
    def test_a_member_starts_cancels_resumes_and_deletes(self, member_client, team, queued):
        run = run_for(team)
        url = lambda action: reverse(f"benchmarks:run-{action}", args=[run.pk])  # noqa: E731
        assert member_client.post(url("start")).status_code == 302
        run.refresh_from_db()
        assert run.status == Status.QUEUED
        member_client.post(url("cancel"))
        run.refresh_from_db()
        assert run.status == Status.CANCELLED
        response = member_client.post(url("resume"), follow=True)
        run.refresh_from_db()
        assert run.status == Status.QUEUED and "the answers already checkpointed are kept" in page(response)
        response = member_client.post(url("delete"), follow=True)
        assert "cancel it first" in page(response) and BenchmarkRun.objects.exists()  # refused while queued
        member_client.post(url("cancel"))
        assert member_client.post(url("delete"))["Location"] == reverse("benchmarks:index")
        assert not BenchmarkRun.objects.exists()

    def test_starting_a_running_run_is_refused_in_words(self, member_client, team):
        run = set_status(run_for(team), Status.RUNNING)
        response = member_client.post(reverse("benchmarks:run-start", args=[run.pk]), follow=True)
        assert "only a pending, failed or cancelled run can start" in page(response)

    def test_a_viewer_is_refused_another_team_is_404_get_is_405(self, client, viewer, member, team, other_team):
        mine, theirs = run_for(team), run_for(other_team)
        client.force_login(viewer)
        assert client.post(reverse("benchmarks:run-start", args=[mine.pk])).status_code == 403
        member_client = client
        client.force_login(member)
        assert member_client.post(reverse("benchmarks:run-cancel", args=[theirs.pk])).status_code == 404
        assert member_client.get(reverse("benchmarks:run-delete", args=[mine.pk])).status_code == 405
        assert {r.status for r in BenchmarkRun.objects.all()} == {Status.PENDING}


class TestRunAnswers:
    def test_it_lists_every_answer_with_response_extracted_and_key(self, viewer_client, team):
        run = scored_run(team)
        html = page(viewer_client.get(reverse("benchmarks:run-answers", args=[run.pk])))
        assert "12 answers." in html and html.count('class="answer"') == 12
        assert "I cannot tell." in html and "timeout: boom" in html

    @pytest.mark.parametrize(
        ("query", "outcomes"),
        [("outcome=no_answer", ["no_answer"]), ("outcome=failed", ["failed"]),
         ("outcome=wrong", ["wrong", "wrong", "wrong"]), ("subject=math&outcome=correct", ["correct"])],
    )  # fmt: skip
    def test_it_filters_by_outcome_and_subject(self, viewer_client, team, query, outcomes):
        run = scored_run(team)
        html = page(viewer_client.get(reverse("benchmarks:run-answers", args=[run.pk]) + "?" + query))
        assert [part.split('"', 1)[0] for part in html.split('data-outcome="')[1:]] == outcomes

    def test_it_filters_by_target(self, viewer_client, team):
        run = scored_run(team)
        large = run.targets.order_by("id").last()
        html = page(viewer_client.get(reverse("benchmarks:run-answers", args=[run.pk]) + f"?target={large.pk}"))
        assert "6 answers." in html and "I cannot tell." not in html

    @pytest.mark.parametrize("query", ["outcome=maybe", "target=abc"])
    def test_a_bad_filter_is_a_400_naming_it(self, viewer_client, team, query):
        run = scored_run(team)
        response = viewer_client.get(reverse("benchmarks:run-answers", args=[run.pk]) + "?" + query)
        assert response.status_code == 400 and f"Filter “{query.split('=')[0]}”" in page(response)

    def test_it_runs_a_constant_number_of_queries(self, viewer_client, team, django_assert_max_num_queries):
        run = run_for(team, suite_for(team, subjects=("law",) * 40))
        target = run.targets.get()
        answer(run, target, 0, extracted="A")
        with CaptureQueriesContext(connection) as few:
            assert viewer_client.get(reverse("benchmarks:run-answers", args=[run.pk])).status_code == 200
        for index in range(1, 40):
            answer(run, target, index, extracted="B")
        with django_assert_max_num_queries(len(few.captured_queries)):
            assert "40 answers." in page(viewer_client.get(reverse("benchmarks:run-answers", args=[run.pk])))

    def test_a_target_of_another_run_is_refused(self, viewer_client, team):
        run, other = scored_run(team), run_for(team)
        response = viewer_client.get(
            reverse("benchmarks:run-answers", args=[run.pk]) + f"?target={other.targets.get().pk}"
        )
        assert response.status_code == 400 and "Not a target of this run." in page(response)


class TestAdmin:
    def test_a_team_admin_sees_the_teams_suites_and_runs_only(self, admin_client_team, team, other_team):
        scored_run(team)
        suite_for(other_team, name="Their suite")
        suites = page(admin_client_team.get("/admin/benchmarks/benchmarksuite/"))
        assert "MMLU mini" in suites and "Their suite" not in suites
        assert "mini run" in page(admin_client_team.get("/admin/benchmarks/benchmarkrun/"))
        assert admin_client_team.get("/admin/benchmarks/benchmarksuite/add/").status_code == 403


# --- the websocket -----------------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
class TestProgressWebsocket:
    def _communicator(self, user, run_id):
        communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), f"/ws/benchmark-runs/{run_id}/")
        communicator.scope["user"] = user
        return communicator

    def test_a_member_gets_the_state_then_updates(self, team, member):
        run = run_for(team)

        async def scenario():
            communicator = self._communicator(member, run.pk)
            connected, _ = await communicator.connect()
            assert connected
            first = await communicator.receive_json_from(timeout=5)
            assert (first["status"], first["total"], first["completed"]) == ("pending", 6, 0)
            await database_sync_to_async(benchmark_run_cancel)(run=run)
            update = await communicator.receive_json_from(timeout=5)
            assert update["status"] == "cancelled"
            await communicator.disconnect()

        asyncio.run(scenario())

    def test_anonymous_and_other_teams_are_refused(self, team, other_team):
        theirs = run_for(other_team)
        viewer = MembershipFactory(team=team, role=Membership.Role.VIEWER).user

        async def refused(user, run_id):
            communicator = self._communicator(user, run_id)
            connected, _ = await communicator.connect()
            await communicator.disconnect()
            return not connected

        assert asyncio.run(refused(AnonymousUser(), run_for(team).pk))
        assert asyncio.run(refused(viewer, theirs.pk))
        assert asyncio.run(refused(viewer, 999_999))
