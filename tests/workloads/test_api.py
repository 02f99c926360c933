"""The workloads API: every endpoint for success, anonymous (401), viewer writing (403), another team's object (404),
bad input (400 naming the field or row, nothing stored), versions only on a real change, and 409 while in use."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.hardware.models import PerformanceRun
from apps.workloads import services, storage
from apps.workloads.models import Tokenizer, Workload, WorkloadDataset, WorkloadVersion
from tests.factories import ModelVariantFactory
from tests.hardware.helpers import stored_run
from tests.test_api_schema import assert_documented, openapi  # noqa: F401 (a fixture)
from tests.workloads import files

pytestmark = pytest.mark.django_db

WORKLOADS = "/api/v1/workloads"
DATASETS = "/api/v1/workload-datasets"
TOKENIZERS = "/api/v1/tokenizers"
SYNTHETIC = {
    "source": "synthetic",
    "seed": 3,
    "input_tokens": {"dist": "uniform", "min": 20, "max": 60},
    "output_tokens": {"dist": "fixed", "value": 16},
}
DATASET_SPEC = {"source": "dataset", "dataset": {"sample": 20, "min_input_tokens": 1, "min_output_tokens": 1}}


@pytest.fixture(autouse=True)
def _empty_caches():
    storage.clear_caches()
    yield
    storage.clear_caches()


def sharegpt_upload(n: int = 6, name: str = "chats.json") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, files.synthetic_sharegpt(n), content_type="application/json")


def mooncake_upload() -> SimpleUploadedFile:
    rows = [{"timestamp": 0, "input_length": 600, "output_length": 20, "hash_ids": [0, 1]}]
    return SimpleUploadedFile("trace.jsonl", files.jsonl(rows))


def make_workload(team, user=None, name="chat", spec=SYNTHETIC, **kwargs) -> Workload:
    return services.workload_create(team=team, user=user, name=name, spec=spec, **kwargs)


def make_dataset(team, n: int = 6) -> WorkloadDataset:
    return services.dataset_upload(
        team=team, user=None, name="chats", content=files.synthetic_sharegpt(n), filename="c.json"
    )


def error_fields(response) -> list[str]:
    return [e["field"] for e in response.json()["errors"]]


# --- workloads ----------------------------------------------------------------------------------------------------


class TestWorkloadCreate:
    def test_it_creates_version_1_and_answers_with_it(self, member_api, team, openapi):  # noqa: F811
        body = {"name": "chat", "description": "d", "spec": SYNTHETIC}
        response = member_api.post(WORKLOADS, body, format="json")
        assert response.status_code == 201, response.json()
        data = response.json()
        assert data["name"] == "chat" and data["version_count"] == 1 and data["latest"]["number"] == 1
        assert data["spec"]["request"]["endpoint"] == "chat" and data["dataset"] is None
        assert Workload.objects.get().team == team
        assert_documented(openapi, response, "/api/v1/workloads/", "post")

    def test_a_bad_spec_is_a_400_naming_each_path_and_stores_nothing(self, member_api):
        spec = {**SYNTHETIC, "input_tokens": {"dist": "cubic"}, "colour": "red"}
        response = member_api.post(WORKLOADS, {"name": "w", "spec": spec}, format="json")
        assert response.status_code == 400
        body = response.json()
        assert set(error_fields(response)) == {"spec.input_tokens.dist", "spec.colour"}
        assert "2 problem(s)" in body["detail"] and body["request_id"]
        assert not Workload.objects.exists() and not WorkloadVersion.objects.exists()

    def test_a_dataset_source_without_a_dataset_names_the_dataset(self, member_api):
        response = member_api.post(WORKLOADS, {"name": "w", "spec": DATASET_SPEC}, format="json")
        assert response.status_code == 400 and error_fields(response) == ["dataset"]

    def test_a_trace_for_a_dataset_source_is_refused(self, member_api, team):
        trace = services.dataset_upload(
            team=team, user=None, name="t", content=mooncake_upload().read(), filename="t.jsonl"
        )
        body = {"name": "w", "spec": DATASET_SPEC, "dataset": trace.pk}
        response = member_api.post(WORKLOADS, body, format="json")
        assert response.status_code == 400 and error_fields(response) == ["dataset"]
        assert "is a trace" in response.json()["errors"][0]["message"]
        assert not Workload.objects.exists()

    def test_another_teams_dataset_is_refused(self, member_api, other_team):
        theirs = make_dataset(other_team)
        body = {"name": "w", "spec": DATASET_SPEC, "dataset": theirs.pk}
        response = member_api.post(WORKLOADS, body, format="json")
        assert response.status_code == 400 and "dataset" in response.json()
        assert not Workload.objects.exists()

    def test_a_name_taken_in_the_team_is_a_400_on_name(self, member_api, team):
        make_workload(team)
        response = member_api.post(WORKLOADS, {"name": "chat", "spec": SYNTHETIC}, format="json")
        assert response.status_code == 400 and "name" in response.json()
        assert Workload.objects.count() == 1

    def test_a_spec_that_is_not_an_object_is_a_400(self, member_api):
        response = member_api.post(WORKLOADS, {"name": "w", "spec": "synthetic"}, format="json")
        assert response.status_code == 400 and error_fields(response) == ["spec"]

    def test_a_viewer_cannot_create(self, viewer_api):
        assert viewer_api.post(WORKLOADS, {"name": "w", "spec": SYNTHETIC}, format="json").status_code == 403
        assert not Workload.objects.exists()

    def test_anonymous_is_401(self, anon_api, db):
        assert anon_api.post(WORKLOADS, {"name": "w", "spec": SYNTHETIC}, format="json").status_code == 401
        assert anon_api.get(WORKLOADS).status_code == 401


class TestWorkloadRead:
    def test_the_list_is_the_teams_by_name_with_latest_versions(self, viewer_api, team, other_team, openapi):  # noqa: F811
        make_workload(team, name="b")
        services.workload_update(workload=make_workload(team, name="a"), user=None, spec={**SYNTHETIC, "seed": 9})
        make_workload(other_team, name="theirs")
        response = viewer_api.get(WORKLOADS)
        assert response.status_code == 200
        rows = response.json()["results"]
        assert [(r["name"], r["version_count"], r["latest"]["number"]) for r in rows] == [("a", 2, 2), ("b", 1, 1)]
        assert rows[0]["spec"]["seed"] == 9
        assert_documented(openapi, response, "/api/v1/workloads/")

    def test_the_archived_filter(self, viewer_api, team):
        services.workload_set_archived(workload=make_workload(team, name="old"), archived=True)
        make_workload(team, name="new")
        names = lambda query: [r["name"] for r in viewer_api.get(WORKLOADS + query).json()["results"]]  # noqa: E731
        assert names("") == ["new", "old"]
        assert names("?archived=true") == ["old"] and names("?archived=false") == ["new"]

    def test_the_list_costs_the_same_queries_for_one_or_many(self, viewer_api, team):
        make_workload(team, name="w0")
        viewer_api.get(WORKLOADS)  # the token's last use is written on its first request
        with CaptureQueriesContext(connection) as one:
            viewer_api.get(WORKLOADS)
        for i in range(1, 6):
            services.workload_update(
                workload=make_workload(team, name=f"w{i}"), user=None, spec={**SYNTHETIC, "seed": i}
            )
        with CaptureQueriesContext(connection) as many:
            assert len(viewer_api.get(WORKLOADS).json()["results"]) == 6
        assert len(many) == len(one)

    def test_another_teams_workload_is_404(self, viewer_api, other_team):
        theirs = make_workload(other_team)
        assert viewer_api.get(f"{WORKLOADS}/{theirs.pk}").status_code == 404
        assert viewer_api.get(f"{WORKLOADS}/{theirs.pk}/versions").status_code == 404
        assert viewer_api.get(f"{WORKLOADS}/{theirs.pk}/versions/1").status_code == 404
        assert viewer_api.get(f"{WORKLOADS}/{theirs.pk}/preview").status_code == 404

    def test_versions_list_and_detail(self, viewer_api, team, openapi):  # noqa: F811
        workload = make_workload(team)
        services.workload_update(workload=workload, user=None, spec={**SYNTHETIC, "seed": 5})
        response = viewer_api.get(f"{WORKLOADS}/{workload.pk}/versions")
        assert [v["number"] for v in response.json()["results"]] == [2, 1]
        assert_documented(openapi, response, "/api/v1/workloads/{id}/versions/")
        detail = viewer_api.get(f"{WORKLOADS}/{workload.pk}/versions/1")
        assert detail.status_code == 200 and detail.json()["spec"]["seed"] == 3
        assert_documented(openapi, detail, "/api/v1/workloads/{id}/versions/{number}/")
        assert viewer_api.get(f"{WORKLOADS}/{workload.pk}/versions/9").status_code == 404


class TestWorkloadUpdate:
    def test_patching_the_name_edits_in_place(self, member_api, team):
        workload = make_workload(team)
        response = member_api.patch(f"{WORKLOADS}/{workload.pk}", {"name": "renamed"}, format="json")
        assert response.status_code == 200 and response.json()["name"] == "renamed"
        assert response.json()["version_count"] == 1

    def test_putting_back_what_was_read_adds_no_version(self, member_api, team):
        workload = make_workload(team)
        current = member_api.get(f"{WORKLOADS}/{workload.pk}").json()
        body = {k: current[k] for k in ("name", "description", "spec", "dataset", "tokenizer", "archived")}
        response = member_api.put(f"{WORKLOADS}/{workload.pk}", body, format="json")
        assert response.status_code == 200 and response.json()["version_count"] == 1

    def test_a_changed_spec_adds_a_version(self, member_api, team, openapi):  # noqa: F811
        workload = make_workload(team)
        spec = {**SYNTHETIC, "output_tokens": {"dist": "fixed", "value": 64}}
        response = member_api.patch(f"{WORKLOADS}/{workload.pk}", {"spec": spec}, format="json")
        assert response.status_code == 200
        assert response.json()["latest"]["number"] == 2 and response.json()["spec"]["output_tokens"]["value"] == 64
        assert_documented(openapi, response, "/api/v1/workloads/{id}/", "patch")

    def test_a_changed_tokenizer_adds_a_version_and_null_clears_it(self, member_api, team, test_tokenizer_json):
        workload = make_workload(team)
        tokenizer = services.tokenizer_upload(team=team, user=None, name="t", content=test_tokenizer_json)
        response = member_api.patch(f"{WORKLOADS}/{workload.pk}", {"tokenizer": tokenizer.pk}, format="json")
        assert response.json()["tokenizer"] == tokenizer.pk and response.json()["latest"]["number"] == 2
        response = member_api.patch(f"{WORKLOADS}/{workload.pk}", {"tokenizer": None}, format="json")
        assert response.json()["tokenizer"] is None and response.json()["latest"]["number"] == 3

    def test_archiving_is_a_patch(self, member_api, team):
        workload = make_workload(team)
        response = member_api.patch(f"{WORKLOADS}/{workload.pk}", {"archived": True}, format="json")
        assert response.json()["archived"] is True and response.json()["version_count"] == 1

    def test_a_bad_spec_changes_nothing(self, member_api, team):
        workload = make_workload(team)
        body = {"name": "renamed", "spec": {**SYNTHETIC, "seed": -1}}
        response = member_api.patch(f"{WORKLOADS}/{workload.pk}", body, format="json")
        assert response.status_code == 400 and error_fields(response) == ["spec.seed"]
        workload.refresh_from_db()
        assert workload.name == "chat" and workload.versions.count() == 1

    def test_a_viewer_cannot_update(self, viewer_api, team):
        workload = make_workload(team)
        assert viewer_api.patch(f"{WORKLOADS}/{workload.pk}", {"name": "x"}, format="json").status_code == 403

    def test_another_teams_workload_is_404(self, member_api, other_team):
        theirs = make_workload(other_team)
        assert member_api.patch(f"{WORKLOADS}/{theirs.pk}", {"name": "x"}, format="json").status_code == 404


class TestWorkloadDelete:
    def test_an_unused_workload_is_deleted(self, member_api, team):
        workload = make_workload(team)
        assert member_api.delete(f"{WORKLOADS}/{workload.pk}").status_code == 204
        assert not Workload.objects.exists() and not WorkloadVersion.objects.exists()

    def test_a_workload_a_run_used_is_409_and_kept(self, member_api, team):
        workload = make_workload(team)
        PerformanceRun.objects.filter(pk=stored_run(team).pk).update(workload_version=workload.versions.get())
        response = member_api.delete(f"{WORKLOADS}/{workload.pk}")
        assert response.status_code == 409
        assert "used by 1 performance run;" in response.json()["detail"]
        assert "archive it instead" in response.json()["detail"]
        assert Workload.objects.filter(pk=workload.pk).exists()

    def test_a_viewer_cannot_delete(self, viewer_api, team):
        workload = make_workload(team)
        assert viewer_api.delete(f"{WORKLOADS}/{workload.pk}").status_code == 403
        assert Workload.objects.exists()

    def test_another_teams_workload_is_404(self, member_api, other_team):
        theirs = make_workload(other_team)
        assert member_api.delete(f"{WORKLOADS}/{theirs.pk}").status_code == 404
        assert Workload.objects.exists()


class TestPreview:
    def test_a_saved_workload_is_previewed_once(self, viewer_api, team, openapi):  # noqa: F811
        workload = make_workload(team)
        response = viewer_api.get(f"{WORKLOADS}/{workload.pk}/preview")
        assert response.status_code == 200 and response.json()["output_tokens"]["mean"] == 16
        assert WorkloadVersion.objects.get().preview == response.json()
        assert_documented(openapi, response, "/api/v1/workloads/{id}/preview/")

    def test_a_version_number_previews_that_version(self, viewer_api, team):
        workload = make_workload(team)
        services.workload_update(workload=workload, user=None, spec={**SYNTHETIC, "output_tokens": {"dist": "fixed",
                                                                                                     "value": 99}})  # fmt: skip
        first = viewer_api.get(f"{WORKLOADS}/{workload.pk}/preview?version=1").json()
        latest = viewer_api.get(f"{WORKLOADS}/{workload.pk}/preview").json()
        assert (first["output_tokens"]["mean"], latest["output_tokens"]["mean"]) == (16, 99)
        assert viewer_api.get(f"{WORKLOADS}/{workload.pk}/preview?version=7").status_code == 404
        assert viewer_api.get(f"{WORKLOADS}/{workload.pk}/preview?version=x").status_code == 400

    def test_an_unsaved_spec_is_previewed_and_nothing_stored(self, viewer_api, team, openapi):  # noqa: F811
        dataset = make_dataset(team)
        body = {"spec": DATASET_SPEC, "dataset": dataset.pk}
        response = viewer_api.post(f"{WORKLOADS}/preview", body, format="json")  # a viewer may: it changes nothing
        assert response.status_code == 200, response.json()
        assert response.json()["requests"] > 0 and response.json()["input_tokens"]["mean"] > 0
        assert not Workload.objects.exists()
        assert_documented(openapi, response, "/api/v1/workloads/preview/", "post")

    def test_an_unsaved_bad_spec_is_a_400_naming_the_path(self, member_api):
        spec = {**SYNTHETIC, "output_tokens": {"dist": "fixed", "value": 0}}
        response = member_api.post(f"{WORKLOADS}/preview", {"spec": spec}, format="json")
        assert response.status_code == 400 and error_fields(response) == ["spec.output_tokens.value"]

    def test_an_unsaved_trace_spec_without_a_trace_names_the_dataset(self, member_api):
        response = member_api.post(f"{WORKLOADS}/preview", {"spec": {"source": "trace"}}, format="json")
        assert response.status_code == 400 and error_fields(response) == ["dataset"]

    def test_another_teams_dataset_cannot_be_previewed(self, member_api, other_team):
        theirs = make_dataset(other_team)
        response = member_api.post(f"{WORKLOADS}/preview", {"spec": DATASET_SPEC, "dataset": theirs.pk}, format="json")
        assert response.status_code == 400 and "dataset" in response.json()

    def test_anonymous_is_401(self, anon_api, db):
        assert anon_api.post(f"{WORKLOADS}/preview", {"spec": SYNTHETIC}, format="json").status_code == 401


# --- datasets -----------------------------------------------------------------------------------------------------


class TestDatasets:
    def test_an_upload_is_parsed_and_stored_without_returning_its_bytes(self, member_api, team, openapi):  # noqa: F811
        response = member_api.post(DATASETS, {"file": sharegpt_upload(6), "name": "chats"}, format="multipart")
        assert response.status_code == 201, response.json()
        body = response.json()
        assert body["format"] == "sharegpt" and body["row_count"] == 6 and body["is_trace"] is False
        assert "payload" not in body and body["stats"]["turns"]["max"] == 3
        assert WorkloadDataset.objects.get().team == team
        assert_documented(openapi, response, "/api/v1/workload-datasets/", "post")

    def test_a_bad_file_is_a_400_naming_row_and_field_and_stores_nothing(self, member_api):
        bad = files.jsonl([{"messages": [{"role": "user", "content": "hi"}]}, {"messages": [{"role": "tool"}]}])
        upload = SimpleUploadedFile("chat.jsonl", bad)
        response = member_api.post(DATASETS, {"file": upload, "format": "openai_chat"}, format="multipart")
        assert response.status_code == 400
        errors = response.json()["errors"]
        assert any(e["row"] == 2 and e["field"].startswith("messages[0]") for e in errors), errors
        assert "Nothing was written" in response.json()["detail"]
        assert not WorkloadDataset.objects.exists()

    def test_an_unknown_format_is_a_400(self, member_api):
        response = member_api.post(DATASETS, {"file": sharegpt_upload(), "format": "parquet"}, format="multipart")
        assert response.status_code == 400 and "format" in response.json()

    def test_the_same_file_twice_is_a_400_naming_the_first(self, member_api, team):
        make_dataset(team)
        response = member_api.post(DATASETS, {"file": sharegpt_upload()}, format="multipart")
        assert response.status_code == 400 and response.json()["errors"][0]["field"] == "file"
        assert "'chats'" in response.json()["errors"][0]["message"]

    def test_list_and_detail_stay_in_the_team(self, viewer_api, team, other_team, openapi):  # noqa: F811
        ours, theirs = make_dataset(team), make_dataset(other_team, n=3)
        listing = viewer_api.get(DATASETS)
        assert [d["id"] for d in listing.json()["results"]] == [ours.pk]
        assert_documented(openapi, listing, "/api/v1/workload-datasets/")
        assert viewer_api.get(f"{DATASETS}/{ours.pk}").json()["name"] == "chats"
        assert viewer_api.get(f"{DATASETS}/{theirs.pk}").status_code == 404

    def test_a_dataset_a_workload_uses_is_409_on_delete(self, member_api, team):
        dataset = make_dataset(team)
        make_workload(team, spec=DATASET_SPEC, dataset=dataset)
        response = member_api.delete(f"{DATASETS}/{dataset.pk}")
        assert response.status_code == 409 and "1 workload version" in response.json()["detail"]
        assert WorkloadDataset.objects.exists()

    def test_an_unused_dataset_is_deleted(self, member_api, team):
        dataset = make_dataset(team)
        assert member_api.delete(f"{DATASETS}/{dataset.pk}").status_code == 204
        assert not WorkloadDataset.objects.exists()

    def test_a_viewer_cannot_upload_or_delete(self, viewer_api, team):
        assert viewer_api.post(DATASETS, {"file": sharegpt_upload()}, format="multipart").status_code == 403
        dataset = make_dataset(team)
        assert viewer_api.delete(f"{DATASETS}/{dataset.pk}").status_code == 403
        assert WorkloadDataset.objects.count() == 1

    def test_another_teams_dataset_cannot_be_deleted(self, member_api, other_team):
        theirs = make_dataset(other_team)
        assert member_api.delete(f"{DATASETS}/{theirs.pk}").status_code == 404

    def test_anonymous_is_401(self, anon_api, db):
        assert anon_api.get(DATASETS).status_code == 401
        assert anon_api.post(DATASETS, {"file": sharegpt_upload()}, format="multipart").status_code == 401


# --- tokenizers ---------------------------------------------------------------------------------------------------


class TestTokenizers:
    def test_an_upload_is_stored_without_returning_its_bytes(self, member_api, team, test_tokenizer_json, openapi):  # noqa: F811
        variant = ModelVariantFactory(team=team)
        upload = SimpleUploadedFile("tokenizer.json", test_tokenizer_json)
        response = member_api.post(
            TOKENIZERS, {"file": upload, "name": "tiny", "variant": variant.pk}, format="multipart"
        )
        assert response.status_code == 201, response.json()
        body = response.json()
        assert body["name"] == "tiny" and body["variant"] == variant.pk and body["vocab_size"] > 0
        assert "content" not in body and body["size_bytes"] == len(test_tokenizer_json)
        assert Tokenizer.objects.get().team == team
        assert_documented(openapi, response, "/api/v1/tokenizers/", "post")

    def test_a_bad_file_is_a_400_naming_the_file_and_stores_nothing(self, member_api):
        upload = SimpleUploadedFile("tokenizer.json", b"not json at all")
        response = member_api.post(TOKENIZERS, {"file": upload, "name": "bad"}, format="multipart")
        assert response.status_code == 400
        assert response.json()["errors"][0] | {"message": ""} == {"row": "file", "field": "tokenizer.json",
                                                                   "message": ""}  # fmt: skip
        assert not Tokenizer.objects.exists()

    def test_another_teams_variant_is_refused(self, member_api, other_team, test_tokenizer_json):
        variant = ModelVariantFactory(team=other_team)
        upload = SimpleUploadedFile("tokenizer.json", test_tokenizer_json)
        response = member_api.post(TOKENIZERS, {"file": upload, "name": "t", "variant": variant.pk}, format="multipart")
        assert response.status_code == 400 and "variant" in response.json()
        assert not Tokenizer.objects.exists()

    def test_a_tokenizer_a_workload_uses_is_409_on_delete(self, member_api, team, test_tokenizer_json):
        tokenizer = services.tokenizer_upload(team=team, user=None, name="t", content=test_tokenizer_json)
        make_workload(team, tokenizer=tokenizer)
        assert member_api.delete(f"{TOKENIZERS}/{tokenizer.pk}").status_code == 409
        assert Tokenizer.objects.exists()

    def test_list_detail_and_delete_stay_in_the_team(self, member_api, team, other_team, test_tokenizer_json):
        theirs = services.tokenizer_upload(team=other_team, user=None, name="t", content=test_tokenizer_json)
        ours = services.tokenizer_upload(team=team, user=None, name="t", content=test_tokenizer_json)
        assert [t["id"] for t in member_api.get(TOKENIZERS).json()["results"]] == [ours.pk]
        assert member_api.get(f"{TOKENIZERS}/{theirs.pk}").status_code == 404
        assert member_api.delete(f"{TOKENIZERS}/{theirs.pk}").status_code == 404
        assert member_api.delete(f"{TOKENIZERS}/{ours.pk}").status_code == 204
        assert list(Tokenizer.objects.all()) == [theirs]

    def test_a_viewer_cannot_upload(self, viewer_api, test_tokenizer_json):
        upload = SimpleUploadedFile("tokenizer.json", test_tokenizer_json)
        assert viewer_api.post(TOKENIZERS, {"file": upload, "name": "t"}, format="multipart").status_code == 403
        assert not Tokenizer.objects.exists()

    def test_anonymous_is_401(self, anon_api, db):
        assert anon_api.get(TOKENIZERS).status_code == 401
