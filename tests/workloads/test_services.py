"""Workload services on a real database: uploads all-or-nothing with row and field named, versions only on a real
change, cross-checks of spec and files, delete refused while runs use a version, preview cached per version."""

import zlib

import pytest
from django.test import override_settings

from apps.hardware.models import PerformanceRun
from apps.workloads import services, storage
from apps.workloads.engine.types import Conversation, ParsedDataset, TraceRow, Turn
from apps.workloads.formats import parse
from apps.workloads.models import Tokenizer, Workload, WorkloadDataset, WorkloadVersion
from llmbench.uploads import FileRejected
from tests.factories import ModelVariantFactory
from tests.hardware.helpers import stored_run
from tests.workloads import files

pytestmark = pytest.mark.django_db

SYNTHETIC = {
    "source": "synthetic",
    "seed": 3,
    "input_tokens": {"dist": "uniform", "min": 20, "max": 60},
    "output_tokens": {"dist": "fixed", "value": 16},
}
DATASET_SPEC = {"source": "dataset", "dataset": {"sample": 50, "min_input_tokens": 1, "min_output_tokens": 1}}
TRACE_SPEC = {"source": "trace", "trace": {"speedup": 2.0}}


@pytest.fixture(autouse=True)
def _empty_caches():
    """Each test loads datasets and tokenizers afresh."""
    storage.clear_caches()
    yield
    storage.clear_caches()


def sharegpt_bytes(n: int = 6) -> bytes:
    return files.synthetic_sharegpt(n)


def mooncake_bytes() -> bytes:
    return files.jsonl(
        [
            {"timestamp": 0, "input_length": 600, "output_length": 20, "hash_ids": [0, 1]},
            {"timestamp": 250, "input_length": 1030, "output_length": 30, "hash_ids": [0, 1, 2]},
            {"timestamp": 1500, "input_length": 100, "output_length": 5, "hash_ids": [7]},
        ]
    )


def rejection(call, **kwargs) -> list[tuple]:
    """(row, field, message) of each error of the FileRejected the call raises."""
    with pytest.raises(FileRejected) as caught:
        call(**kwargs)
    return [(e.row, e.field, e.message) for e in caught.value.errors]


def spec_errors(call, **kwargs) -> list[tuple[str, str]]:
    """(field, error) of each problem of the SpecInvalid the call raises."""
    with pytest.raises(services.SpecInvalid) as caught:
        call(**kwargs)
    return list(zip(caught.value.fields, caught.value.errors, strict=True))


def upload_sharegpt(team, member, name="chats", n=6) -> WorkloadDataset:
    return services.dataset_upload(team=team, user=member, name=name, content=sharegpt_bytes(n), filename="chats.json")


def upload_trace(team, member) -> WorkloadDataset:
    return services.dataset_upload(
        team=team, user=member, name="mooncake", content=mooncake_bytes(), filename="trace.jsonl"
    )


# --- storage ------------------------------------------------------------------------------------------------------


def test_a_dataset_payload_round_trips_exactly():
    """Conversations with systems, references, fixed lengths and None survive dump → load unchanged."""
    parsed = ParsedDataset(
        kind="conversations",
        conversations=(
            Conversation("a", "Be brief.", (Turn("Hi", 3, None, "Hello"), Turn("More?", None, 12, None))),
            Conversation("b", None, (Turn("Ünïcode ✓"),)),
        ),
        skipped={"not_alternating": 2},
        notes=("a note",),
    )
    payload = storage.dump_dataset(parsed)
    storage.clear_caches()
    assert storage.load_dataset(payload) == parsed
    assert isinstance(zlib.decompress(payload), bytes)


def test_a_trace_payload_round_trips_exactly():
    """Trace rows keep float times, hash id tuples, sessions and delays."""
    parsed = ParsedDataset(
        kind="trace",
        rows=(TraceRow(0.0, 512, None, 8, (1, 2), "u1", None), TraceRow(None, None, "and then?", None, (), "u1", 40.5)),
        block_size=256,
    )
    payload = storage.dump_dataset(parsed)
    storage.clear_caches()
    loaded = storage.load_dataset(memoryview(payload))  # PostgreSQL returns a memoryview
    assert loaded == parsed and loaded.rows[0].hash_ids == (1, 2)


def test_load_dataset_is_cached_per_payload():
    """The second load of the same payload is the same object (no second decompress and parse)."""
    payload = storage.dump_dataset(parse("sharegpt", sharegpt_bytes()))
    storage.clear_caches()
    assert storage.load_dataset(payload) is storage.load_dataset(payload)


def test_counter_for_is_none_without_a_tokenizer():
    assert storage.counter_for(None) is None


# --- tokenizers ---------------------------------------------------------------------------------------------------


def test_a_tokenizer_is_stored_compressed_with_its_vocabulary(team, member, test_tokenizer_json, test_counter):
    """The file is stored zlib-compressed with its sha, size, vocabulary and special ids; it counts like the file."""
    variant = ModelVariantFactory(team=team)
    tokenizer = services.tokenizer_upload(
        team=team, user=member, name="tiny", content=test_tokenizer_json, variant=variant
    )
    tokenizer.refresh_from_db()
    assert zlib.decompress(bytes(tokenizer.content)) == test_tokenizer_json
    assert tokenizer.size_bytes == len(test_tokenizer_json) and tokenizer.vocab_size == test_counter.vocab_size
    assert tokenizer.special_ids == test_counter.special_ids and tokenizer.variant == variant
    storage.clear_caches()
    counter = storage.counter_for(Tokenizer.objects.defer("content").get(pk=tokenizer.pk))
    assert counter.count(["the kettle clicked off"]) == test_counter.count(["the kettle clicked off"])
    assert storage.counter_for(tokenizer) is counter  # cached by sha256


def test_a_file_that_is_not_a_tokenizer_is_rejected_and_nothing_stored(team, member):
    errors = rejection(services.tokenizer_upload, team=team, user=member, name="bad", content=b'{"model": 1}')
    assert errors[0][:2] == ("file", "tokenizer.json") and "tokenizer.json" in errors[0][2]
    assert not Tokenizer.objects.exists()


@override_settings(TOKENIZER_MAX_MB=1)
def test_a_tokenizer_over_the_size_limit_is_rejected(team, member):
    content = b" " * (1024 * 1024 + 1)
    errors = rejection(services.tokenizer_upload, team=team, user=member, name="big", content=content)
    assert errors[0][:2] == ("file", "tokenizer.json") and "TOKENIZER_MAX_MB" in errors[0][2]
    assert not Tokenizer.objects.exists()


def test_a_tokenizer_name_or_file_twice_is_rejected(team, member, test_tokenizer_json):
    services.tokenizer_upload(team=team, user=member, name="tiny", content=test_tokenizer_json)
    same_name = rejection(services.tokenizer_upload, team=team, user=member, name="tiny", content=b"{}")
    assert same_name[0][1] == "name" and "already exists" in same_name[0][2]
    same_file = rejection(services.tokenizer_upload, team=team, user=member, name="copy", content=test_tokenizer_json)
    assert same_file[0][1] == "file" and "'tiny'" in same_file[0][2]
    assert Tokenizer.objects.count() == 1


def test_a_tokenizer_for_another_teams_variant_is_rejected(team, other_team, member, test_tokenizer_json):
    variant = ModelVariantFactory(team=other_team)
    errors = rejection(
        services.tokenizer_upload, team=team, user=member, name="t", content=test_tokenizer_json, variant=variant
    )
    assert errors[0][1] == "variant"
    assert not Tokenizer.objects.exists()


# --- datasets -----------------------------------------------------------------------------------------------------


def test_a_sharegpt_dataset_is_detected_parsed_and_stored(team, member):
    """Format detected, counts and stats filled in, and the payload loads back as the parser read the file."""
    dataset = upload_sharegpt(team, member, n=6)
    dataset.refresh_from_db()
    parsed = parse("sharegpt", sharegpt_bytes(6))
    assert dataset.format == "sharegpt" and dataset.original_filename == "chats.json"
    assert dataset.row_count == 6 and dataset.turn_count == sum(len(c.turns) for c in parsed.conversations)
    assert dataset.stats["turns"]["max"] == 3 and dataset.stats["turns"]["multi_turn"] == 4
    assert dataset.stats["input_chars"]["count"] == dataset.turn_count
    assert sum(dataset.stats["input_chars"]["counts"]) == dataset.turn_count
    storage.clear_caches()
    assert storage.load_dataset(dataset.payload) == parsed


def test_a_trace_gets_its_duration_and_token_histograms(team, member):
    dataset = upload_trace(team, member)
    assert dataset.format == "mooncake" and dataset.is_trace and dataset.row_count == 3
    assert dataset.stats["duration_s"] == pytest.approx(1.5)
    assert dataset.stats["input_tokens"]["max"] == 1030 and dataset.stats["rows_with_hash_ids"] == 3


def test_an_explicit_format_is_used_instead_of_detection(team, member):
    content = files.jsonl([{"prompt": "Write a haiku", "output_tokens": 12}])
    dataset = services.dataset_upload(
        team=team, user=member, name="p", content=content, filename="x.txt", fmt="prompts_jsonl"
    )
    assert dataset.format == "prompts_jsonl" and dataset.stats["output_tokens"]["max"] == 12


def test_a_malformed_dataset_names_row_and_field_and_stores_nothing(team, member):
    content = files.sharegpt([files.sharegpt_item("a", ("human", "hi")), {"conversations": [{"from": "narrator"}]}])
    errors = rejection(
        services.dataset_upload, team=team, user=member, name="bad", content=content, filename="bad.json"
    )
    assert any(field.startswith("conversations[0]") for _, field, _ in errors), errors
    assert not WorkloadDataset.objects.exists()


def test_a_file_whose_format_cannot_be_told_is_rejected_on_format(team, member):
    errors = rejection(
        services.dataset_upload, team=team, user=member, name="x", content=b"hello\n", filename="notes.txt"
    )
    assert errors[0][:2] == ("file", "format")


def test_an_unknown_format_name_is_rejected(team, member):
    errors = rejection(
        services.dataset_upload, team=team, user=member, name="x", content=b"[]", filename="a.json", fmt="parquet"
    )
    assert errors[0][1] == "format" and "parquet" in errors[0][2]


def test_the_same_dataset_twice_names_the_first(team, member):
    upload_sharegpt(team, member, name="first")
    errors = rejection(
        services.dataset_upload, team=team, user=member, name="again", content=sharegpt_bytes(), filename="c.json"
    )
    assert errors[0][1] == "file" and "'first'" in errors[0][2]
    assert WorkloadDataset.objects.count() == 1


def test_a_dataset_where_everything_is_skipped_is_rejected(team, member):
    content = files.sharegpt([files.sharegpt_item("a", ("gpt", "only an answer"))])
    errors = rejection(services.dataset_upload, team=team, user=member, name="x", content=content, filename="a.json")
    assert errors[0][1] == "file" and "skipped" in errors[0][2]
    assert not WorkloadDataset.objects.exists()


@override_settings(WORKLOAD_MAX_UPLOAD_MB=1)
def test_a_dataset_over_the_size_limit_is_rejected(team, member):
    content = b"[" + b" " * (1024 * 1024) + b"]"
    errors = rejection(services.dataset_upload, team=team, user=member, name="x", content=content, filename="a.json")
    assert errors[0][1] == "file" and "WORKLOAD_MAX_UPLOAD_MB" in errors[0][2]


def test_a_dataset_without_a_name_is_named_after_its_file(team, member):
    dataset = services.dataset_upload(team=team, user=member, name=" ", content=sharegpt_bytes(), filename="c.json")
    assert dataset.name == "c.json"


# --- workloads ----------------------------------------------------------------------------------------------------


def test_a_workload_starts_at_version_1_with_the_normalized_spec(team, member):
    workload = services.workload_create(team=team, user=member, name="chat", spec=SYNTHETIC, description="d")
    version = workload.versions.get()
    assert version.number == 1 and version.spec["request"]["endpoint"] == "chat"  # defaults filled in
    assert version.spec["format"] == "llmbench.workload/1" and len(version.spec_sha256) == 64
    assert workload.description == "d" and version.created_by == member


def test_a_bad_spec_names_each_path_and_stores_nothing(team, member):
    spec = {**SYNTHETIC, "input_tokens": {"dist": "uniform", "min": 5, "max": 2}, "colour": "red"}
    errors = spec_errors(services.workload_create, team=team, user=member, name="w", spec=spec)
    fields = [field for field, _ in errors]
    assert "spec.input_tokens.max" in fields and "spec.colour" in fields
    assert not Workload.objects.exists() and not WorkloadVersion.objects.exists()


def test_a_spec_that_is_not_an_object_is_named_spec(team, member):
    errors = spec_errors(services.workload_create, team=team, user=member, name="w", spec=["synthetic"])
    assert errors[0][0] == "spec"


def test_a_dataset_workload_needs_a_dataset(team, member):
    errors = spec_errors(services.workload_create, team=team, user=member, name="w", spec=DATASET_SPEC)
    assert errors == [("dataset", errors[0][1])] and "needs an uploaded dataset" in errors[0][1]


def test_a_trace_cannot_feed_a_dataset_workload_nor_a_dataset_a_trace_workload(team, member):
    trace, chats = upload_trace(team, member), upload_sharegpt(team, member)
    errors = spec_errors(services.workload_create, team=team, user=member, name="w", spec=DATASET_SPEC, dataset=trace)
    assert errors[0][0] == "dataset" and "is a trace" in errors[0][1]
    errors = spec_errors(services.workload_create, team=team, user=member, name="w", spec=TRACE_SPEC, dataset=chats)
    assert errors[0][0] == "dataset" and "is not a trace" in errors[0][1]
    assert not Workload.objects.exists()


def test_a_synthetic_workload_takes_no_dataset(team, member):
    chats = upload_sharegpt(team, member)
    errors = spec_errors(services.workload_create, team=team, user=member, name="w", spec=SYNTHETIC, dataset=chats)
    assert errors[0][0] == "dataset"


def test_another_teams_files_are_refused(team, other_team, member, outsider, test_tokenizer_json):
    theirs = upload_sharegpt(other_team, outsider)
    their_tokenizer = services.tokenizer_upload(team=other_team, user=outsider, name="t", content=test_tokenizer_json)
    errors = spec_errors(
        services.workload_create, team=team, user=member, name="w", spec=DATASET_SPEC, dataset=theirs,
        tokenizer=their_tokenizer,
    )  # fmt: skip
    assert {"dataset", "tokenizer"} <= {field for field, _ in errors}


def test_a_workload_name_is_unique_in_the_team(team, other_team, member, outsider):
    services.workload_create(team=team, user=member, name="chat", spec=SYNTHETIC)
    errors = spec_errors(services.workload_create, team=team, user=member, name="chat", spec=SYNTHETIC)
    assert errors[0][0] == "name"
    services.workload_create(team=other_team, user=outsider, name="chat", spec=SYNTHETIC)  # another team may


def test_an_equal_spec_adds_no_version(team, member):
    """Writing out the defaults, or reordering keys, normalizes to the same spec: no new version."""
    workload = services.workload_create(team=team, user=member, name="w", spec=SYNTHETIC)
    spelled_out = {"request": {"endpoint": "chat"}, "length_basis": "content", **SYNTHETIC}
    version = services.workload_update(workload=workload, user=member, spec=spelled_out)
    assert version.number == 1 and workload.versions.count() == 1


def test_a_changed_spec_dataset_or_tokenizer_adds_a_version(team, member, test_tokenizer_json):
    workload = services.workload_create(team=team, user=member, name="w", spec=SYNTHETIC)
    changed = {**SYNTHETIC, "output_tokens": {"dist": "fixed", "value": 32}}
    v2 = services.workload_update(workload=workload, user=member, spec=changed)
    tokenizer = services.tokenizer_upload(team=team, user=member, name="t", content=test_tokenizer_json)
    v3 = services.workload_update(workload=workload, user=member, tokenizer=tokenizer)
    v4 = services.workload_update(workload=workload, user=member, tokenizer=None)
    assert [v2.number, v3.number, v4.number] == [2, 3, 4]
    assert v2.spec["output_tokens"]["value"] == 32 and v3.spec == v2.spec and v3.tokenizer == tokenizer
    assert v4.tokenizer is None
    assert WorkloadVersion.objects.get(workload=workload, number=1).spec["output_tokens"]["value"] == 16  # kept


def test_switching_to_a_dataset_source_checks_the_new_dataset(team, member):
    workload = services.workload_create(team=team, user=member, name="w", spec=SYNTHETIC)
    chats = upload_sharegpt(team, member)
    version = services.workload_update(workload=workload, user=member, spec=DATASET_SPEC, dataset=chats)
    assert version.number == 2 and version.dataset == chats
    errors = spec_errors(services.workload_update, workload=workload, user=member, spec=SYNTHETIC)
    assert errors[0][0] == "dataset"  # the dataset stays unless cleared: a synthetic spec takes none
    assert workload.versions.count() == 2


def test_name_and_description_change_in_place(team, member):
    workload = services.workload_create(team=team, user=member, name="w", spec=SYNTHETIC)
    version = services.workload_update(workload=workload, user=member, name="renamed", description="new")
    workload.refresh_from_db()
    assert (workload.name, workload.description, version.number) == ("renamed", "new", 1)


def test_an_invalid_update_changes_nothing(team, member):
    workload = services.workload_create(team=team, user=member, name="w", spec=SYNTHETIC)
    bad = {**SYNTHETIC, "seed": -1}
    errors = spec_errors(services.workload_update, workload=workload, user=member, name="renamed", spec=bad)
    assert errors[0][0] == "spec.seed"
    workload.refresh_from_db()
    assert workload.name == "w" and workload.versions.count() == 1


def test_archiving_hides_nothing_but_sets_the_flag(team, member):
    workload = services.workload_create(team=team, user=member, name="w", spec=SYNTHETIC)
    assert services.workload_set_archived(workload=workload, archived=True).archived
    workload.refresh_from_db()
    assert workload.archived and not services.workload_set_archived(workload=workload, archived=False).archived


def test_an_unused_workload_is_deleted_with_its_versions(team, member):
    workload = services.workload_create(team=team, user=member, name="w", spec=SYNTHETIC)
    services.workload_update(workload=workload, user=member, spec={**SYNTHETIC, "seed": 4})
    services.workload_delete(workload=workload)
    assert not Workload.objects.exists() and not WorkloadVersion.objects.exists()


def test_a_workload_a_run_used_cannot_be_deleted(team, member):
    workload = services.workload_create(team=team, user=member, name="w", spec=SYNTHETIC)
    run = stored_run(team)
    PerformanceRun.objects.filter(pk=run.pk).update(workload_version=workload.versions.get())
    with pytest.raises(services.WorkloadInUse) as caught:
        services.workload_delete(workload=workload)
    assert caught.value.runs == 1 and "archive it instead" in str(caught.value)
    assert Workload.objects.filter(pk=workload.pk).exists() and WorkloadVersion.objects.count() == 1


def test_a_dataset_or_tokenizer_a_version_uses_cannot_be_deleted(team, member, test_tokenizer_json):
    chats = upload_sharegpt(team, member)
    tokenizer = services.tokenizer_upload(team=team, user=member, name="t", content=test_tokenizer_json)
    workload = services.workload_create(
        team=team, user=member, name="w", spec=DATASET_SPEC, dataset=chats, tokenizer=tokenizer
    )
    with pytest.raises(services.WorkloadInUse):
        services.dataset_delete(dataset=chats)
    with pytest.raises(services.WorkloadInUse):
        services.tokenizer_delete(tokenizer=tokenizer)
    services.workload_delete(workload=workload)
    services.dataset_delete(dataset=chats)
    services.tokenizer_delete(tokenizer=tokenizer)
    assert not WorkloadDataset.objects.exists() and not Tokenizer.objects.exists()


# --- preview and plan ---------------------------------------------------------------------------------------------


def test_a_synthetic_preview_with_a_tokenizer_has_exact_lengths(team, member, test_tokenizer_json):
    tokenizer = services.tokenizer_upload(team=team, user=member, name="t", content=test_tokenizer_json)
    result = services.workload_preview(spec=SYNTHETIC, tokenizer=tokenizer, sample=40)
    assert result["sessions"] == 40 and result["length_basis"] == "tokenizer"
    edges = result["input_tokens"]["histogram"]["edges"]
    assert edges[0] >= 20 and edges[-1] <= 61  # token-exact: inside the uniform range (bins [a, b), last edge max + 1)
    assert result["output_tokens"]["mean"] == 16


def test_a_dataset_preview_reads_the_stored_dataset(team, member):
    chats = upload_sharegpt(team, member, n=12)
    storage.clear_caches()
    result = services.workload_preview(
        spec=DATASET_SPEC, dataset=WorkloadDataset.objects.defer("payload").get(), sample=50
    )
    assert chats.row_count == 12 and result["sessions"] == 50  # sampled with repeats, as vLLM oversamples
    assert result["skipped"] == {} and result["input_tokens"]["mean"] > 0


def test_a_dataset_preview_shows_the_drawn_conversations_not_repeats(team, member):
    upload_sharegpt(team, member, n=12)
    spec = {**DATASET_SPEC, "dataset": {**DATASET_SPEC["dataset"], "sample": 8}}
    result = services.workload_preview(spec=spec, dataset=WorkloadDataset.objects.get(), sample=500)
    assert result["sessions"] == 8


def test_a_preview_of_a_bad_spec_raises_spec_invalid():
    with pytest.raises(services.SpecInvalid) as caught:
        services.workload_preview(spec={**SYNTHETIC, "input_tokens": {"dist": "cubic"}})
    assert caught.value.fields == ["spec.input_tokens.dist"]


def test_a_plan_that_cannot_be_built_is_spec_invalid(team, member):
    """Filters that leave nothing of the dataset are the spec's problem, said as such."""
    chats = upload_sharegpt(team, member)
    spec = {"source": "dataset", "dataset": {"min_input_tokens": 5000, "max_input_tokens": 6000}}
    with pytest.raises(services.SpecInvalid) as caught:
        services.workload_preview(spec=spec, dataset=chats)
    assert caught.value.errors


def test_a_version_preview_is_computed_once_and_kept(team, member, django_assert_num_queries):
    workload = services.workload_create(team=team, user=member, name="w", spec=SYNTHETIC)
    version = workload.versions.get()
    first = services.version_preview(version)
    assert WorkloadVersion.objects.get(pk=version.pk).preview == first
    with django_assert_num_queries(0):
        assert services.version_preview(version) == first


@pytest.mark.parametrize("kind", ["dataset", "trace"])
def test_a_stored_dataset_or_trace_version_previews(team, member, kind):
    """A version's stored (normalized) spec validates again and previews from the stored file."""
    if kind == "dataset":
        dataset, spec = upload_sharegpt(team, member), DATASET_SPEC
    else:
        dataset, spec = upload_trace(team, member), TRACE_SPEC
    workload = services.workload_create(team=team, user=member, name="w", spec=spec, dataset=dataset)
    storage.clear_caches()
    version = WorkloadVersion.objects.select_related("dataset").defer("dataset__payload").get(workload=workload)
    result = services.version_preview(version)
    assert result["requests"] > 0
    if kind == "trace":
        assert result["requests"] == 3 and result["trace"]["duration_s"] == pytest.approx(0.75)  # speed-up 2


def test_workload_plan_builds_the_versions_requests(team, member, test_tokenizer_json):
    tokenizer = services.tokenizer_upload(team=team, user=member, name="t", content=test_tokenizer_json)
    workload = services.workload_create(team=team, user=member, name="w", spec=SYNTHETIC, tokenizer=tokenizer)
    plan = services.workload_plan(version=workload.versions.get(), count=5, model="m", temperature=0.0, seed=1)
    assert plan.request_count == 5 and plan.length_basis == "tokenizer"
    request = plan.request(0, 0, [])
    assert request.model == "m" and request.max_tokens == 16
