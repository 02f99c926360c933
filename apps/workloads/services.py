"""Workload operations: upload tokenizers and datasets, create and edit workloads (versions), preview and plan.

A workload version is immutable: editing the spec, dataset or tokenizer adds a version, and runs keep the one
they were measured with. Uploads are all-or-nothing: a bad file raises FileRejected naming row and field, and
nothing is stored."""

import hashlib
import re
from collections import Counter
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import ProtectedError

from apps.accounts.models import Team
from apps.scores.models import ModelVariant
from apps.workloads.engine.spec import normalize, spec_sha256, validate_spec
from apps.workloads.engine.tokens import TokenCounter, load_tokenizer
from apps.workloads.engine.types import ParsedDataset
from apps.workloads.formats import FORMATS, detect, parse
from apps.workloads.models import Tokenizer, Workload, WorkloadDataset, WorkloadVersion
from apps.workloads.storage import (
    compress_tokenizer,
    counter_for,
    dataset_parsed,
    dump_dataset,
    remember_counter,
)
from llmbench.uploads import FileRejected, RowError

if TYPE_CHECKING:
    from apps.workloads.engine.plan import RequestPlan

HISTOGRAM_BINS = 30
UNCHANGED: Any = ...  # workload_update: "leave the dataset / tokenizer as it is"


class SpecInvalid(ValueError):
    """A workload spec (or what goes with it) is not valid; `errors` are "path: message" strings.

    `fields` names, for each error, the API field it belongs to: "spec.<path>" for a problem inside the spec,
    "dataset", "tokenizer" or "name" for the cross-checks."""

    def __init__(self, errors: list[str], fields: list[str] | None = None):
        self.errors = list(errors)
        self.fields = list(fields) if fields is not None else [_spec_field(e) for e in self.errors]
        super().__init__("; ".join(self.errors))

    def items(self) -> list[dict]:
        """[{"field", "message"}] for an API answer."""
        return [{"field": f, "message": _message(e)} for f, e in zip(self.fields, self.errors, strict=True)]


_PATH = re.compile(r"[A-Za-z_][\w.\[\]]*")


def _split(error: str) -> tuple[str | None, str]:
    """("input_tokens.max", "must be …") of "input_tokens.max: must be …"; (None, error) without a path."""
    head, sep, rest = error.partition(": ")
    return (head, rest) if sep and _PATH.fullmatch(head) else (None, error)


def _spec_field(error: str) -> str:
    path = _split(error)[0]
    return f"spec.{path}" if path else "spec"


def _message(error: str) -> str:
    if error.startswith("(spec): "):
        return error.removeprefix("(spec): ")
    return _split(error)[1]


class WorkloadInUse(Exception):
    """The workload (or dataset, tokenizer) cannot be deleted: `runs` objects use one of its versions."""

    def __init__(self, runs: int, used_by: dict[str, int] | None = None):
        self.runs = runs
        self.used_by = used_by or {}
        what = ", ".join(f"{n} {name}" for name, n in sorted(self.used_by.items())) or f"{runs} runs"
        super().__init__(f"used by {what}; archive it instead")


def _in_use(exc: ProtectedError) -> WorkloadInUse:
    counts: Counter = Counter(type(obj)._meta for obj in exc.protected_objects)
    used_by = {str(meta.verbose_name if n == 1 else meta.verbose_name_plural): n for meta, n in counts.items()}
    return WorkloadInUse(runs=sum(counts.values()), used_by=used_by)


def _mb(size_bytes: int) -> str:
    return f"{size_bytes / 1024 / 1024:,.1f} MB"


def tokenizer_size_check(size_bytes: int) -> None:
    """FileRejected when a tokenizer.json is over TOKENIZER_MAX_MB (checked before the file is read)."""
    limit_mb = settings.TOKENIZER_MAX_MB
    if size_bytes > limit_mb * 1024 * 1024:
        message = f"is {_mb(size_bytes)}; the limit is {limit_mb} MB (TOKENIZER_MAX_MB)."
        raise FileRejected([RowError("file", "tokenizer.json", message)])


def dataset_size_check(size_bytes: int) -> None:
    """FileRejected when a dataset or trace is over WORKLOAD_MAX_UPLOAD_MB (checked before the file is read)."""
    limit_mb = settings.WORKLOAD_MAX_UPLOAD_MB
    if size_bytes > limit_mb * 1024 * 1024:
        message = f"is {_mb(size_bytes)}; the limit is {limit_mb} MB (WORKLOAD_MAX_UPLOAD_MB)."
        raise FileRejected([RowError("file", "file", message)])


# --- tokenizers ---------------------------------------------------------------------------------------------------


def tokenizer_upload(*, team: Team, user, name: str, content: bytes, variant: ModelVariant | None = None) -> Tokenizer:
    """Store a Hugging Face tokenizer.json for the team; FileRejected (nothing stored) when it is not one."""
    name = (name or "").strip()
    tokenizer_size_check(len(content))
    errors = _name_errors(name, Tokenizer, team, max_length=100, what="tokenizer")
    if variant is not None and variant.team_id != team.pk:
        errors.append(RowError("file", "variant", "is not a model variant of this team."))
    if errors:
        raise FileRejected(errors)
    try:
        counter = load_tokenizer(content)
    except ValueError as exc:
        raise FileRejected([RowError("file", "tokenizer.json", str(exc))]) from None
    sha = hashlib.sha256(content).hexdigest()
    existing = Tokenizer.objects.filter(team=team, sha256=sha).only("name").first()
    if existing is not None:
        raise FileRejected([RowError("file", "file", f"is the same file as the tokenizer {existing.name!r}.")])
    try:
        with transaction.atomic():
            tokenizer = Tokenizer.objects.create(
                team=team,
                name=name,
                variant=variant,
                content=compress_tokenizer(content),
                sha256=sha,
                size_bytes=len(content),
                vocab_size=counter.vocab_size,
                special_ids=counter.special_ids,
                created_by=user,
            )
    except IntegrityError:  # the same name or file uploaded at the same moment
        raise FileRejected([RowError("file", "file", "a tokenizer with this name or file was just stored.")]) from None
    remember_counter(sha, counter)
    return tokenizer


def tokenizer_delete(*, tokenizer: Tokenizer) -> None:
    """Delete a tokenizer no workload version uses; WorkloadInUse otherwise."""
    try:
        with transaction.atomic():
            tokenizer.delete()
    except ProtectedError as exc:
        raise _in_use(exc) from None


def _name_errors(name: str, model, team: Team, *, max_length: int, what: str) -> list[RowError]:
    if not name:
        return [RowError("file", "name", "is required.")]
    if len(name) > max_length:
        return [RowError("file", "name", f"is longer than {max_length} characters.")]
    if model.objects.filter(team=team, name=name).exists():
        return [RowError("file", "name", f"a {what} named {name!r} already exists in this team.")]
    return []


# --- datasets -----------------------------------------------------------------------------------------------------


def dataset_upload(
    *, team: Team, user, name: str, content: bytes, filename: str, fmt: str | None = None
) -> WorkloadDataset:
    """Parse, check and store a dataset or trace file (format detected when not given), all or nothing."""
    dataset_size_check(len(content))
    name = (name or "").strip() or (filename or "").strip()
    if not name:
        raise FileRejected([RowError("file", "name", "is required.")])
    if len(name) > 200:
        raise FileRejected([RowError("file", "name", "is longer than 200 characters.")])
    if not fmt:
        fmt = detect(content, filename or "")
        if fmt is None:
            known = ", ".join(FORMATS)
            raise FileRejected([RowError("file", "format", f"could not be told from the file; choose one of {known}.")])
    parsed = parse(fmt, content)  # FileRejected naming row and field
    sha = hashlib.sha256(content).hexdigest()
    existing = WorkloadDataset.objects.filter(team=team, sha256=sha).only("name").first()
    if existing is not None:
        raise FileRejected([RowError("file", "file", f"is the same file as the dataset {existing.name!r}.")])
    kept = len(parsed.conversations) if parsed.kind == "conversations" else len(parsed.rows)
    if kept == 0:
        reasons = ", ".join(f"{n} {reason.replace('_', ' ')}" for reason, n in sorted(parsed.skipped.items()))
        raise FileRejected([RowError("file", "file", f"has nothing usable: every item was skipped ({reasons}).")])
    try:
        with transaction.atomic():
            dataset = WorkloadDataset.objects.create(
                team=team,
                name=name,
                format=fmt,
                original_filename=(filename or "")[:255],
                sha256=sha,
                size_bytes=len(content),
                row_count=kept,
                turn_count=_turn_count(parsed),
                payload=dump_dataset(parsed),
                skipped=dict(parsed.skipped),
                notes=list(parsed.notes),
                stats=dataset_stats(parsed),
                created_by=user,
            )
    except IntegrityError:  # the same file uploaded at the same moment
        raise FileRejected([RowError("file", "file", "this file was just stored as another dataset.")]) from None
    return dataset


def dataset_delete(*, dataset: WorkloadDataset) -> None:
    """Delete a dataset no workload version uses; WorkloadInUse otherwise."""
    try:
        with transaction.atomic():
            dataset.delete()
    except ProtectedError as exc:
        raise _in_use(exc) from None


def _turn_count(parsed: ParsedDataset) -> int:
    if parsed.kind == "trace":
        return len(parsed.rows)
    return sum(len(c.turns) for c in parsed.conversations)


def histogram(values: list[float] | np.ndarray, bins: int = HISTOGRAM_BINS) -> dict:
    """{"edges", "counts", "mean", "p50", "p90", "max"} of `values` ({"count": 0} for none)."""
    array = np.asarray(values, dtype=float)
    if array.size == 0:
        return {"count": 0}
    low, high = float(array.min()), float(array.max())
    counts, edges = np.histogram(array, bins=min(bins, max(1, int(high - low) + 1)), range=(low, high or 1.0))
    p50, p90 = np.percentile(array, [50, 90])
    return {
        "count": int(array.size),
        "edges": [round(float(e), 3) for e in edges],
        "counts": counts.tolist(),
        "mean": round(float(array.mean()), 3),
        "p50": round(float(p50), 3),
        "p90": round(float(p90), 3),
        "max": high,
    }


def dataset_stats(parsed: ParsedDataset) -> dict:
    """What the dataset pages show: length histograms, turns per conversation and, for traces, the span."""
    if parsed.kind == "conversations":
        turns = [len(c.turns) for c in parsed.conversations]
        return {
            "input_chars": histogram([len(t.user) for c in parsed.conversations for t in c.turns]),
            "turns": {
                "mean": round(float(np.mean(turns)), 3),
                "max": max(turns),
                "multi_turn": sum(n > 1 for n in turns),
            },
            "with_system": sum(c.system is not None for c in parsed.conversations),
            "output_tokens": histogram(
                [t.output_tokens for c in parsed.conversations for t in c.turns if t.output_tokens is not None]
            ),
        }
    rows = parsed.rows
    times = [r.t_ms for r in rows if r.t_ms is not None]
    sessions = {r.session for r in rows if r.session is not None}
    return {
        "input_tokens": histogram([r.input_tokens for r in rows if r.input_tokens is not None]),
        "input_chars": histogram([len(r.prompt) for r in rows if r.prompt is not None]),
        "output_tokens": histogram([r.output_tokens for r in rows if r.output_tokens is not None]),
        "duration_s": round((max(times) - min(times)) / 1000, 3) if times else 0.0,
        "requests": len(rows),
        "sessions": len(sessions),
        "turns": {"mean": round(len(rows) / len(sessions), 3) if sessions else 1.0},
        "rows_with_hash_ids": sum(bool(r.hash_ids) for r in rows),
        "block_size": parsed.block_size,
    }


# --- workloads ----------------------------------------------------------------------------------------------------


def _check(
    spec: Any, *, team: Team | None, dataset: WorkloadDataset | None, tokenizer: Tokenizer | None
) -> tuple[list[str], list[str]]:
    """(errors, fields) of the spec and its cross-checks with the dataset and tokenizer."""
    errors = validate_spec(spec)
    fields = [_spec_field(e) for e in errors]

    def add(field: str, message: str) -> None:
        errors.append(f"{field}: {message}")
        fields.append(field)

    if team is not None and dataset is not None and dataset.team_id != team.pk:
        add("dataset", "is not a dataset of this team.")
    if team is not None and tokenizer is not None and tokenizer.team_id != team.pk:
        add("tokenizer", "is not a tokenizer of this team.")
    source = spec.get("source") if isinstance(spec, dict) else None
    if source == "synthetic" and dataset is not None:
        add("dataset", "a synthetic workload takes no dataset; remove it or change the source.")
    elif source == "dataset":
        if dataset is None:
            add("dataset", "a dataset workload needs an uploaded dataset (ShareGPT, OpenAI chat or prompts).")
        elif dataset.is_trace:
            add("dataset", f"{dataset.name!r} is a trace ({dataset.get_format_display()}); choose the trace source "
                           "to replay it, or a conversation or prompt dataset.")  # fmt: skip
    elif source == "trace":
        if dataset is None:
            add("dataset", "a trace workload needs an uploaded trace (Mooncake, Azure or llmbench trace).")
        elif not dataset.is_trace:
            add("dataset", f"{dataset.name!r} is not a trace ({dataset.get_format_display()}); choose the dataset "
                           "source for it, or upload a trace.")  # fmt: skip
    return errors, fields


def _raise_if_invalid(spec: Any, **kwargs) -> None:
    errors, fields = _check(spec, **kwargs)
    if errors:
        raise SpecInvalid(errors, fields)


def _workload_name_errors(team: Team, name: str, exclude_pk: int | None = None) -> SpecInvalid | None:
    name = (name or "").strip()
    if not name:
        return SpecInvalid(["name: is required."], ["name"])
    if len(name) > 200:
        return SpecInvalid(["name: is longer than 200 characters."], ["name"])
    clash = Workload.objects.filter(team=team, name=name)
    if exclude_pk is not None:
        clash = clash.exclude(pk=exclude_pk)
    if clash.exists():
        return SpecInvalid([f"name: a workload named {name!r} already exists in this team."], ["name"])
    return None


def _new_version(*, workload: Workload, number: int, spec: dict, dataset, tokenizer, user) -> WorkloadVersion:
    normalized = normalize(spec)
    return WorkloadVersion.objects.create(
        workload=workload,
        number=number,
        spec=normalized,
        spec_sha256=spec_sha256(normalized),
        dataset=dataset,
        tokenizer=tokenizer,
        created_by=user,
    )


def workload_create(
    *,
    team: Team,
    user,
    name: str,
    spec: dict,
    description: str = "",
    dataset: WorkloadDataset | None = None,
    tokenizer: Tokenizer | None = None,
) -> Workload:
    """A new workload with its version 1; SpecInvalid naming each problem's path."""
    problem = _workload_name_errors(team, name)
    errors, fields = _check(spec, team=team, dataset=dataset, tokenizer=tokenizer)
    if problem is not None:
        errors, fields = problem.errors + errors, problem.fields + fields
    if errors:
        raise SpecInvalid(errors, fields)
    try:
        with transaction.atomic():
            workload = Workload.objects.create(
                team=team, name=name.strip(), description=description or "", created_by=user
            )
            _new_version(workload=workload, number=1, spec=spec, dataset=dataset, tokenizer=tokenizer, user=user)
    except IntegrityError:  # the same name created at the same moment
        raise SpecInvalid([f"name: a workload named {name.strip()!r} already exists in this team."], ["name"]) from None
    return workload


def workload_update(
    *,
    workload: Workload,
    user,
    spec: dict | None = None,
    name: str | None = None,
    description: str | None = None,
    dataset: WorkloadDataset | None = UNCHANGED,
    tokenizer: Tokenizer | None = UNCHANGED,
) -> WorkloadVersion:
    """Edit a workload: a new version when the normalized spec, the dataset or the tokenizer changed (else the
    latest is returned); name and description are edited in place. SpecInvalid names each problem's path."""
    original = workload
    with transaction.atomic():
        workload = Workload.objects.select_for_update().get(pk=workload.pk)
        latest = workload.versions.order_by("-number").first()
        new_spec = latest.spec if spec is None else spec
        new_dataset = latest.dataset if dataset is UNCHANGED else dataset
        new_tokenizer = latest.tokenizer if tokenizer is UNCHANGED else tokenizer
        errors, fields = [], []
        if name is not None:
            problem = _workload_name_errors(workload.team, name, exclude_pk=workload.pk)
            if problem is not None:
                errors, fields = problem.errors, problem.fields
        more_errors, more_fields = _check(new_spec, team=workload.team, dataset=new_dataset, tokenizer=new_tokenizer)
        if errors or more_errors:
            raise SpecInvalid(errors + more_errors, fields + more_fields)
        changed_fields = []
        if name is not None and name.strip() != workload.name:
            workload.name = name.strip()
            changed_fields.append("name")
        if description is not None and description != workload.description:
            workload.description = description
            changed_fields.append("description")
        if changed_fields:
            workload.save(update_fields=[*changed_fields, "updated_at"])
            for field in changed_fields:  # the caller's instance shows the edit too
                setattr(original, field, getattr(workload, field))
        same = (
            spec_sha256(normalize(new_spec)) == latest.spec_sha256
            and getattr(new_dataset, "pk", None) == latest.dataset_id
            and getattr(new_tokenizer, "pk", None) == latest.tokenizer_id
        )
        if same:
            return latest
        version = _new_version(
            workload=workload, number=latest.number + 1, spec=new_spec, dataset=new_dataset,
            tokenizer=new_tokenizer, user=user,
        )  # fmt: skip
        Workload.objects.filter(pk=workload.pk).update(updated_at=version.created_at)
        return version


def workload_set_archived(*, workload: Workload, archived: bool) -> Workload:
    """Archive a workload (hidden from pickers, kept for the runs that used it) or bring it back."""
    if workload.archived != archived:
        workload.archived = archived
        workload.save(update_fields=["archived", "updated_at"])
    return workload


def workload_delete(*, workload: Workload) -> None:
    """Delete a workload and its versions; WorkloadInUse when a run (or sweep) uses any version."""
    try:
        with transaction.atomic():
            workload.delete()
    except ProtectedError as exc:
        raise _in_use(exc) from None


# --- preview and plan ---------------------------------------------------------------------------------------------


def workload_preview(
    *, spec: dict, dataset: WorkloadDataset | None = None, tokenizer: Tokenizer | None = None, sample: int = 500
) -> dict:
    """What a spec would send: histograms of a sample of its requests, sessions, turns, prefix sharing, warnings."""
    from apps.workloads.engine.plan import build_plan
    from apps.workloads.engine.preview import preview

    _raise_if_invalid(spec, team=None, dataset=dataset, tokenizer=tokenizer)
    counter: TokenCounter | None = counter_for(tokenizer)
    parsed = dataset_parsed(dataset) if dataset is not None else None
    spec = normalize(spec)
    # What a run would send: a dataset's drawn conversations (not repeats of them), a trace's whole window (its
    # span and rate); the figures then look at the first `sample` sessions.
    count = sample
    if spec["source"] == "dataset":
        count = min(sample, spec["dataset"]["sample"])
    elif spec["source"] == "trace":
        count = settings.LOAD_STEP_MAX_REQUESTS
    try:
        plan = build_plan(spec, count=count, model="preview", dataset=parsed, counter=counter)
    except ValueError as exc:
        raise SpecInvalid([str(exc)]) from None
    return preview(plan, counter, sample=sample)


def version_preview(version: WorkloadVersion) -> dict:
    """The preview of a stored version, computed once and kept on the version."""
    if version.preview:
        return version.preview
    result = workload_preview(spec=version.spec, dataset=version.dataset, tokenizer=version.tokenizer)
    result = orjson.loads(orjson.dumps(result, option=orjson.OPT_SERIALIZE_NUMPY))  # plain JSON values only
    version.preview = result
    WorkloadVersion.objects.filter(pk=version.pk).update(preview=result)
    return result


def workload_plan(
    *,
    version: WorkloadVersion,
    count: int,
    model: str,
    calibration=None,
    temperature: float | None = None,
    seed: int | None = None,
) -> "RequestPlan":
    """The requests a run sends with this version (the runner calls this)."""
    from apps.workloads.engine.plan import build_plan

    return build_plan(
        version.spec,
        count=count,
        model=model,
        dataset=dataset_parsed(version.dataset) if version.dataset_id else None,
        counter=counter_for(version.tokenizer),
        calibration=calibration,
        temperature=temperature,
        seed=seed,
    )
