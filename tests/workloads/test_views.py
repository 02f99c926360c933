"""Workload pages: the list, the editor (spec built from fields, errors in words on the right field), the live
preview partial, a workload's page (versions, runs, archive, delete), and the dataset and tokenizer uploads; by
role and team."""

import json
import re

import pytest
from django.urls import reverse

from apps.hardware.models import PerformanceRun
from apps.workloads import services
from apps.workloads.models import Tokenizer, Workload, WorkloadDataset, WorkloadVersion
from tests.factories import ModelVariantFactory
from tests.workloads.files import jsonl, sharegpt, sharegpt_item

pytestmark = pytest.mark.django_db

# What the editor posts for a synthetic, multi-turn workload with one shared-prefix group.
EDITOR = {
    "name": "chat mix", "description": "Support chat", "source": "synthetic", "seed": 7, "length_basis": "content",
    "input_dist": "uniform", "input_min": 100, "input_max": 400, "output_dist": "fixed", "output_value": 64,
    "prefix_1_weight": 1, "prefix_1_count": 2, "prefix_1_tokens": 50, "prefix_placement": "system",
    "multi_turn": "on", "turns_dist": "uniform", "turns_min": 2, "turns_max": 3, "think_dist": "fixed",
    "think_value": 1, "sessions_mode": "concurrent", "request_endpoint": "chat", "request_pin_output": "ignore_eos",
    "request_response_format": "none", "dataset_output_from": "reference",
}  # fmt: skip


def editor(**changes) -> dict:
    data = dict(EDITOR)
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def synthetic_spec(**changes) -> dict:
    spec = {"source": "synthetic", "seed": 1, "input_tokens": {"dist": "fixed", "value": 200},
            "output_tokens": {"dist": "fixed", "value": 20}}  # fmt: skip
    spec.update(changes)
    return spec


def make_workload(team, name="base", **spec_changes) -> Workload:
    return services.workload_create(team=team, user=None, name=name, spec=synthetic_spec(**spec_changes))


def histogram_data(content: bytes, element_id: str) -> dict:
    match = re.search(rf'<script id="{element_id}" type="application/json">(.*?)</script>', content.decode(), re.S)
    assert match, f"no {element_id} in the page"
    return json.loads(match[1])


def sharegpt_bytes() -> bytes:
    items = [
        sharegpt_item(
            f"c{i}", ("human", f"Question {i}: how do tides work near the coast?"), ("gpt", "The moon pulls.")
        )
        for i in range(20)
    ]
    return sharegpt(items)


def upload(name: str, content: bytes):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, content)


class TestList:
    def test_it_lists_the_teams_workloads_with_their_latest_version(self, viewer_client, team, other_team):
        workload = make_workload(team, "mine")
        services.workload_update(workload=workload, user=None, spec=synthetic_spec(seed=2))
        make_workload(other_team, "theirs")
        response = viewer_client.get(reverse("workloads:list"))
        body = response.content.decode()
        assert response.status_code == 200
        assert "mine" in body and "theirs" not in body and "v2" in body
        assert reverse("workloads:new") not in body  # a viewer gets no "New workload" button

    def test_archived_ones_show_only_when_asked(self, viewer_client, team):
        services.workload_set_archived(workload=make_workload(team, "old one"), archived=True)
        make_workload(team, "live one")
        body = viewer_client.get(reverse("workloads:list")).content.decode()
        assert "live one" in body and "old one" not in body
        body = viewer_client.get(reverse("workloads:list"), {"show": "archived"}).content.decode()
        assert "old one" in body and "live one" not in body
        body = viewer_client.get(reverse("workloads:list"), {"show": "all"}).content.decode()
        assert "old one" in body and "live one" in body

    def test_the_query_count_does_not_grow_with_the_workloads(self, viewer_client, team, django_assert_max_num_queries):
        for i in range(8):
            make_workload(team, f"w{i}")
        with django_assert_max_num_queries(12):
            assert viewer_client.get(reverse("workloads:list")).status_code == 200

    def test_anonymous_is_sent_to_log_in(self, client):
        response = client.get(reverse("workloads:list"))
        assert response.status_code == 302 and "/login" in response.url

    def test_the_navigation_has_workloads(self, viewer_client):
        body = viewer_client.get(reverse("workloads:list")).content.decode()
        assert f'<a href="{reverse("workloads:list")}" aria-current="page">Workloads</a>' in body


class TestCreate:
    def test_a_member_creates_a_multi_turn_workload_from_the_fields(self, member_client, team):
        assert member_client.get(reverse("workloads:new")).status_code == 200
        response = member_client.post(reverse("workloads:new"), editor())
        workload = Workload.objects.get()
        assert response.status_code == 302 and response.url == reverse("workloads:detail", args=[workload.pk])
        spec = workload.latest.spec
        assert workload.team == team and workload.description == "Support chat" and workload.latest.number == 1
        assert spec["input_tokens"] == {"dist": "uniform", "min": 100, "max": 400}
        assert spec["output_tokens"] == {"dist": "fixed", "value": 64}
        assert spec["prefix"] == {"buckets": [{"weight": 1, "count": 2, "tokens": 50}], "placement": "system"}
        assert spec["sessions"]["turns"] == {"dist": "uniform", "min": 2, "max": 3}
        assert spec["sessions"]["think_time_s"] == {"dist": "fixed", "value": 1}

    def test_request_options_reach_the_spec(self, member_client, team):
        schema = '{"type": "object", "properties": {"answer": {"type": "string"}}}'
        data = editor(request_endpoint="completions", request_stop="END\n###", request_response_format="json_schema",
                      request_json_schema=schema, request_top_k=40, request_min_p="0.05",
                      request_repetition_penalty="1.1", request_pin_output="min_tokens")  # fmt: skip
        assert member_client.post(reverse("workloads:new"), data).status_code == 302
        request = Workload.objects.get().latest.spec["request"]
        assert request["endpoint"] == "completions" and request["stop"] == ["END", "###"]
        assert request["response_format"]["json_schema"]["name"] == "response"
        assert request["response_format"]["json_schema"]["schema"]["type"] == "object"
        assert (request["top_k"], request["min_p"], request["repetition_penalty"]) == (40, 0.05, 1.1)

    def test_user_centric_sessions_need_users_and_a_gap(self, member_client, team):
        response = member_client.post(reverse("workloads:new"), editor(sessions_mode="user_centric"))
        errors = response.context["form"].errors
        assert response.status_code == 400 and "sessions_users" in errors and "sessions_turn_gap_s" in errors
        data = editor(sessions_mode="user_centric", sessions_users=20, sessions_turn_gap_s="2.5")
        assert member_client.post(reverse("workloads:new"), data).status_code == 302
        sessions = Workload.objects.get().latest.spec["sessions"]
        assert (sessions["mode"], sessions["users"], sessions["turn_gap_s"]) == ("user_centric", 20, 2.5)

    @pytest.mark.parametrize(
        ("changes", "field", "words"),
        [
            ({"input_min": 500, "input_max": 100}, "input_max", "Must be ≥ min"),
            ({"input_dist": "normal", "input_mean": None}, "input_mean", "Required"),
            ({"input_dist": "lognormal", "input_average": 900, "input_median_ratio": "1.5"}, "input_median_ratio",
             "Must be in (0, 1]"),
            ({"input_dist": "empirical", "input_edges": "1, x", "input_weights": "1"}, "input_edges",
             "Numbers separated by commas"),
            ({"output_value": 0}, "output_value", "At least 1"),
            ({"prefix_2_weight": 3}, "prefix_2_count", "Give the weight"),
            ({"request_response_format": "json_schema", "request_json_schema": "{not json"}, "request_json_schema",
             "Not valid JSON"),
            ({"request_stop": "a\nb\nc\nd\ne"}, "request_stop", "at most 4"),
            ({"source": "dataset"}, "dataset", "Choose a dataset"),
            ({"source": "trace"}, "trace", "Choose a trace"),
            ({"source": "trace", "trace_window_start_s": 10, "trace_window_end_s": 5}, "trace_window_end_s",
             "after the window start"),
        ],
    )  # fmt: skip
    def test_bad_values_are_a_400_on_the_field_in_words(self, member_client, team, changes, field, words):
        response = member_client.post(reverse("workloads:new"), editor(**changes))
        errors = response.context["form"].errors
        assert response.status_code == 400 and field in errors, errors
        assert words in " ".join(errors[field])
        assert not re.search(r"\b[a-z]+_[a-z_]+\b", " ".join(errors[field])), "raw setting names in the message"
        assert not Workload.objects.exists()

    def test_a_taken_name_is_refused(self, member_client, team):
        make_workload(team, "chat mix")
        response = member_client.post(reverse("workloads:new"), editor())
        assert response.status_code == 400 and "already has a workload" in response.context["form"].errors["name"][0]

    def test_another_teams_dataset_is_not_a_choice(self, member_client, team, other_team):
        theirs = services.dataset_upload(team=other_team, user=None, name="theirs", content=sharegpt_bytes(),
                                         filename="theirs.json")  # fmt: skip
        response = member_client.post(reverse("workloads:new"), editor(source="dataset", dataset=theirs.pk))
        assert response.status_code == 400 and "not one of the available choices" in str(
            response.context["form"].errors["dataset"]
        )

    def test_a_viewer_cannot_create(self, viewer_client, team):
        assert viewer_client.get(reverse("workloads:new")).status_code == 200
        assert viewer_client.post(reverse("workloads:new"), editor()).status_code == 403
        assert not Workload.objects.exists()

    def test_anonymous_is_sent_to_log_in(self, client):
        assert client.post(reverse("workloads:new"), editor()).status_code == 302
        assert not Workload.objects.exists()

    def test_a_dataset_workload_with_output_lengths_from_a_distribution(self, member_client, team):
        dataset = services.dataset_upload(team=team, user=None, name="chats", content=sharegpt_bytes(),
                                          filename="chats.json")  # fmt: skip
        data = editor(source="dataset", dataset=dataset.pk, dataset_sample=10, dataset_output_from="distribution",
                      dataset_max_input_tokens=2000, multi_turn=None, prefix_1_weight=None, prefix_1_count=None,
                      prefix_1_tokens=None)  # fmt: skip
        response = member_client.post(reverse("workloads:new"), data)
        assert response.status_code == 302, response.context["form"].errors
        version = Workload.objects.get().latest
        assert version.dataset == dataset and "input_tokens" not in version.spec and "sessions" not in version.spec
        assert version.spec["dataset"]["sample"] == 10 and version.spec["dataset"]["output_from"] == "distribution"
        assert version.spec["output_tokens"] == {"dist": "fixed", "value": 64}

    def test_a_trace_workload_keeps_only_the_trace_settings(self, member_client, team):
        rows = [{"timestamp_ms": 0, "input_tokens": 300, "output_tokens": 20},
                {"timestamp_ms": 500, "input_tokens": 120, "output_tokens": 10}]  # fmt: skip
        trace = services.dataset_upload(team=team, user=None, name="trace", content=jsonl(rows),
                                        filename="trace.jsonl", fmt="llmbench_trace")  # fmt: skip
        data = editor(source="trace", trace=trace.pk, trace_speedup="2", trace_window_end_s="60")
        assert member_client.post(reverse("workloads:new"), data).status_code == 302
        version = Workload.objects.get().latest
        assert version.dataset == trace and set(version.spec) >= {"trace", "request"}
        assert not set(version.spec) & {"input_tokens", "output_tokens", "prefix", "sessions", "dataset"}
        assert version.spec["trace"]["speedup"] == 2.0 and version.spec["trace"]["window_end_s"] == 60.0


class TestEdit:
    def test_saving_unchanged_keeps_the_version_and_a_change_adds_one(self, member_client, team):
        member_client.post(reverse("workloads:new"), editor())
        workload = Workload.objects.get()
        page = member_client.get(reverse("workloads:edit", args=[workload.pk]))
        form = page.context["form"]
        assert page.status_code == 200 and form.initial["input_max"] == 400 and form.initial["multi_turn"] is True
        response = member_client.post(reverse("workloads:edit", args=[workload.pk]), editor(), follow=True)
        assert workload.versions.count() == 1
        assert "stays version 1" in response.content.decode()
        response = member_client.post(reverse("workloads:edit", args=[workload.pk]), editor(input_max=800), follow=True)
        assert workload.versions.count() == 2 and workload.latest.spec["input_tokens"]["max"] == 800
        assert "version 2" in response.content.decode()

    def test_the_prefilled_form_posts_back_unchanged(self, member_client, team):
        """Every initial value of the edit page, posted as the browser would, is the same spec: no new version."""
        member_client.post(reverse("workloads:new"), editor(request_stop="END", request_top_k=5))
        workload = Workload.objects.get()
        form = member_client.get(reverse("workloads:edit", args=[workload.pk])).context["form"]
        data = {}
        for name in form.fields:
            value = form[name].value()
            if value is True:
                data[name] = "on"
            elif value not in (None, False, ""):
                data[name] = value
        response = member_client.post(reverse("workloads:edit", args=[workload.pk]), data)
        assert response.status_code == 302 and workload.versions.count() == 1

    def test_a_rename_keeps_the_version(self, member_client, team):
        member_client.post(reverse("workloads:new"), editor())
        workload = Workload.objects.get()
        member_client.post(reverse("workloads:edit", args=[workload.pk]), editor(name="renamed"))
        workload.refresh_from_db()
        assert workload.name == "renamed" and workload.versions.count() == 1

    def test_bad_values_leave_the_workload_as_it_was(self, member_client, team):
        member_client.post(reverse("workloads:new"), editor())
        workload = Workload.objects.get()
        response = member_client.post(reverse("workloads:edit", args=[workload.pk]), editor(turns_min=9))
        assert response.status_code == 400 and "turns_max" in response.context["form"].errors
        assert workload.versions.count() == 1

    def test_a_viewer_cannot_save(self, viewer_client, team):
        workload = make_workload(team)
        assert viewer_client.get(reverse("workloads:edit", args=[workload.pk])).status_code == 200
        assert viewer_client.post(reverse("workloads:edit", args=[workload.pk]), editor()).status_code == 403
        assert workload.versions.count() == 1

    def test_another_teams_workload_is_a_404(self, member_client, other_team):
        theirs = make_workload(other_team)
        assert member_client.get(reverse("workloads:edit", args=[theirs.pk])).status_code == 404
        assert member_client.post(reverse("workloads:edit", args=[theirs.pk]), editor()).status_code == 404
        assert theirs.versions.count() == 1


class TestPreview:
    def test_a_valid_form_gets_figures_and_both_histograms(self, member_client, team):
        response = member_client.post(reverse("workloads:preview"), editor(), HTTP_HX_REQUEST="true")
        body = response.content.decode()
        assert response.status_code == 200 and "<html" not in body
        input_hist = histogram_data(response.content, "preview-input-hist")
        output_hist = histogram_data(response.content, "preview-output-hist")
        assert sum(input_hist["counts"]) > 0 and len(input_hist["edges"]) == len(input_hist["counts"]) + 1
        assert output_hist["counts"] and 63 < output_hist["edges"][0] <= 64 <= output_hist["edges"][-1]
        assert 'id="preview-sessions"' in body and "calibrated against the server at run time" in body
        assert "Advanced: spec JSON" in body and "&quot;input_tokens&quot;" in body

    def test_an_invalid_form_gets_its_problems_in_words(self, member_client, team):
        response = member_client.post(reverse("workloads:preview"), editor(input_min=900, input_max=100))
        body = response.content.decode()
        assert response.status_code == 200 and 'id="preview-problems"' in body
        assert "Maximum (tokens): Must be ≥ min (900)." in body and "preview-input-hist" not in body

    def test_with_a_tokenizer_lengths_are_exact(self, member_client, team, test_tokenizer_json):
        tokenizer = services.tokenizer_upload(team=team, user=None, name="tiny bpe", content=test_tokenizer_json)
        data = editor(tokenizer=tokenizer.pk, multi_turn=None)
        body = member_client.post(reverse("workloads:preview"), data).content.decode()
        assert "exact, counted with tokenizer tiny bpe" in body.lower()
        assert histogram_data(body.encode(), "preview-input-hist")["edges"][0] >= 100

    def test_a_dataset_preview_counts_what_it_skipped_in_words(self, member_client, team):
        short = [sharegpt_item(f"s{i}", ("human", "Tell me."), ("gpt", "Tides.")) for i in range(5)]
        long = [sharegpt_item(f"l{i}", ("human", "Tell me about the moon and the sea " * 40), ("gpt", "Tides."))
                for i in range(5)]  # fmt: skip
        dataset = services.dataset_upload(team=team, user=None, name="mixed", content=sharegpt(long + short),
                                          filename="mixed.json")  # fmt: skip
        data = editor(source="dataset", dataset=dataset.pk, dataset_sample=5, dataset_min_input_tokens=1,
                      dataset_max_input_tokens=50, dataset_min_output_tokens=1, multi_turn=None)  # fmt: skip
        response = member_client.post(reverse("workloads:preview"), data)
        skipped = re.search(r'<dd id="preview-skipped">(.*?)</dd>', response.content.decode(), re.S)
        assert response.status_code == 200 and skipped
        assert "Prompt longer than the longest kept" in skipped[1] and "input_above_max" not in skipped[1]

    def test_a_viewer_may_preview_but_not_save(self, viewer_client, team):
        assert viewer_client.post(reverse("workloads:preview"), editor()).status_code == 200
        assert not Workload.objects.exists()

    def test_it_rejects_get(self, member_client):
        assert member_client.get(reverse("workloads:preview")).status_code == 405

    def test_anonymous_is_sent_to_log_in(self, client):
        assert client.post(reverse("workloads:preview"), editor()).status_code == 302


class TestDetail:
    def test_it_says_what_the_workload_sends_with_its_preview_and_versions(self, viewer_client, team):
        workload = make_workload(team, "steady", input_tokens={"dist": "uniform", "min": 64, "max": 256})
        services.workload_update(workload=workload, user=None, spec=synthetic_spec(seed=3))
        response = viewer_client.get(reverse("workloads:detail", args=[workload.pk]))
        body = response.content.decode()
        assert response.status_code == 200
        assert "always 200 tokens" in body  # version 2's input length, in words
        assert 'id="version-table"' in body and "<td>v1</td>" in body and "<td>v2</td>" in body
        assert histogram_data(response.content, "preview-input-hist")["counts"]
        assert reverse("workloads:edit", args=[workload.pk]) not in body  # no edit button for a viewer

    def test_it_lists_the_runs_measured_with_it(self, viewer_client, team):
        workload = make_workload(team)
        run = PerformanceRun.objects.create(team=team, variant=ModelVariantFactory(team=team), name="step 1",
                                            workload_version=workload.latest)  # fmt: skip
        body = viewer_client.get(reverse("workloads:detail", args=[workload.pk])).content.decode()
        assert reverse("hardware:run", args=[run.pk]) in body and "step 1" in body

    def test_another_teams_workload_is_a_404(self, viewer_client, other_team):
        theirs = make_workload(other_team)
        assert viewer_client.get(reverse("workloads:detail", args=[theirs.pk])).status_code == 404


class TestArchiveAndDelete:
    def test_a_member_archives_and_unarchives(self, member_client, team):
        workload = make_workload(team)
        assert member_client.post(reverse("workloads:archive", args=[workload.pk])).status_code == 302
        workload.refresh_from_db()
        assert workload.archived
        member_client.post(reverse("workloads:unarchive", args=[workload.pk]))
        workload.refresh_from_db()
        assert not workload.archived

    def test_a_member_deletes_an_unused_workload(self, member_client, team):
        workload = make_workload(team)
        response = member_client.post(reverse("workloads:delete", args=[workload.pk]))
        assert response.status_code == 302 and response.url == reverse("workloads:list")
        assert not Workload.objects.exists() and not WorkloadVersion.objects.exists()

    def test_a_workload_a_run_used_is_not_deleted(self, member_client, team):
        workload = make_workload(team)
        PerformanceRun.objects.create(
            team=team, variant=ModelVariantFactory(team=team), workload_version=workload.latest
        )
        response = member_client.post(reverse("workloads:delete", args=[workload.pk]), follow=True)
        body = response.content.decode()
        assert Workload.objects.filter(pk=workload.pk).exists()
        assert "cannot be deleted" in body and "archive it instead" in body

    def test_a_viewer_cannot_archive_or_delete(self, viewer_client, team):
        workload = make_workload(team)
        assert viewer_client.post(reverse("workloads:archive", args=[workload.pk])).status_code == 403
        assert viewer_client.post(reverse("workloads:delete", args=[workload.pk])).status_code == 403
        workload.refresh_from_db()
        assert not workload.archived

    def test_they_reject_get_and_other_teams(self, member_client, team, other_team):
        mine, theirs = make_workload(team), make_workload(other_team)
        assert member_client.get(reverse("workloads:archive", args=[mine.pk])).status_code == 405
        assert member_client.get(reverse("workloads:delete", args=[mine.pk])).status_code == 405
        assert member_client.post(reverse("workloads:delete", args=[theirs.pk])).status_code == 404
        assert member_client.post(reverse("workloads:archive", args=[theirs.pk])).status_code == 404
        assert Workload.objects.count() == 2

    def test_anonymous_is_sent_to_log_in(self, client, team):
        workload = make_workload(team)
        assert client.post(reverse("workloads:delete", args=[workload.pk])).status_code == 302
        assert client.post(reverse("workloads:archive", args=[workload.pk])).status_code == 302
        assert Workload.objects.filter(archived=False).count() == 1


class TestDatasets:
    def test_a_member_uploads_a_dataset_and_sees_it_listed(self, member_client, team):
        response = member_client.post(reverse("workloads:datasets"), {"file": upload("chats.json", sharegpt_bytes())})
        assert response.status_code == 302
        dataset = WorkloadDataset.objects.get()
        assert dataset.team == team and dataset.name == "chats.json" and dataset.format == "sharegpt"
        body = member_client.get(reverse("workloads:datasets")).content.decode()
        assert "chats.json" in body and "ShareGPT JSON" in body

    def test_a_bad_file_lists_each_row_and_field_and_stores_nothing(self, member_client, team):
        bad = sharegpt([sharegpt_item("a", ("human", "hi"), ("gpt", "yo")), sharegpt_item("b", ("narrator", "x"))])
        response = member_client.post(reverse("workloads:datasets"),
                                      {"file": upload("bad.json", bad), "name": "bad", "format": "sharegpt"})  # fmt: skip
        body = response.content.decode()
        errors = response.context["file_error"]["errors"]
        assert response.status_code == 400 and not WorkloadDataset.objects.exists()
        assert any("narrator" in e["message"] and "from" in e["field"] for e in errors)
        assert "<th>Row</th><th>Field</th><th>Problem</th>" in body and "narrator" in body

    def test_a_viewer_cannot_upload(self, viewer_client, team):
        assert viewer_client.get(reverse("workloads:datasets")).status_code == 200
        response = viewer_client.post(reverse("workloads:datasets"), {"file": upload("c.json", sharegpt_bytes())})
        assert response.status_code == 403 and not WorkloadDataset.objects.exists()

    def test_other_teams_datasets_are_not_listed(self, viewer_client, other_team):
        services.dataset_upload(team=other_team, user=None, name="their set", content=sharegpt_bytes(),
                                filename="t.json")  # fmt: skip
        assert "their set" not in viewer_client.get(reverse("workloads:datasets")).content.decode()

    def test_anonymous_is_sent_to_log_in(self, client):
        assert client.get(reverse("workloads:datasets")).status_code == 302


class TestTokenizers:
    def test_a_member_uploads_a_tokenizer_for_a_variant(self, member_client, team, test_tokenizer_json):
        variant = ModelVariantFactory(team=team)
        data = {"file": upload("tokenizer.json", test_tokenizer_json), "name": "tiny", "variant": variant.pk}
        assert member_client.post(reverse("workloads:tokenizers"), data).status_code == 302
        tokenizer = Tokenizer.objects.get()
        assert tokenizer.team == team and tokenizer.variant == variant and tokenizer.vocab_size > 0
        assert "tiny" in member_client.get(reverse("workloads:tokenizers")).content.decode()

    def test_a_file_that_is_not_a_tokenizer_is_refused_with_nothing_stored(self, member_client, team):
        data = {"file": upload("tokenizer.json", b'{"hello": 1}'), "name": "nope"}
        response = member_client.post(reverse("workloads:tokenizers"), data)
        errors = response.context["file_error"]["errors"]
        assert response.status_code == 400 and not Tokenizer.objects.exists()
        assert errors and errors[0]["row"] == "file" and errors[0]["field"]

    def test_another_teams_variant_is_not_a_choice(self, member_client, team, other_team, test_tokenizer_json):
        theirs = ModelVariantFactory(team=other_team)
        data = {"file": upload("tokenizer.json", test_tokenizer_json), "name": "tiny", "variant": theirs.pk}
        response = member_client.post(reverse("workloads:tokenizers"), data)
        assert response.status_code == 400 and "variant" in response.context["form"].errors
        assert not Tokenizer.objects.exists()

    def test_a_viewer_cannot_upload(self, viewer_client, team, test_tokenizer_json):
        data = {"file": upload("tokenizer.json", test_tokenizer_json), "name": "tiny"}
        assert viewer_client.post(reverse("workloads:tokenizers"), data).status_code == 403
        assert not Tokenizer.objects.exists()

    def test_anonymous_is_sent_to_log_in(self, client):
        assert client.get(reverse("workloads:tokenizers")).status_code == 302
