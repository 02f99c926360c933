"""The tracked models, by label, and the save/delete signals that write their entries.

Models are named by app label and looked up with apps.get_model, so the audit trail imports none of
the apps above it, and accounts (below it) never imports the audit trail. Receivers are connected per
model (sender=...): a model nobody tracks keeps Django's fast deletes.

Updates: pre_save reads the row's tracked columns as they were (one query, only for tracked models,
only for the columns being saved) and post_save compares. Deletes: see _on_pre_delete."""

import hmac
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from django.apps import apps
from django.db import models
from django.db.models.signals import post_delete, post_save, pre_delete, pre_save

from apps.audit.models import AuditEntry
from apps.audit.services import build_entry, plain, safe_url
from llmbench import crypto

_OLD_ROW = "_audit_old_row"
_DELETE_STATE = "_audit_delete_state"

Changes = dict[str, list]


@dataclass(frozen=True)
class Tracked:
    """How one model is audited."""

    label: str  # "providers.ProviderEndpoint"
    object_type: str  # "provider_endpoint": the first word of its actions
    fields: tuple[str, ...] = ()  # summarised on create and delete, compared on update
    create: bool = False  # record "<type>.created"
    # (instance, changes) -> the action for an update, or None when the change is not worth an entry
    update: Callable[[models.Model, Changes], str | None] | None = None
    delete: bool = True  # record "<type>.deleted" (or the name `deleted_action` gives)
    deleted_action: str = "deleted"
    type_of: Callable[[models.Model], str] | None = None  # the object type per object (experiment kinds)
    secret_columns: tuple[str, ...] = field(default=())  # compared, never written

    def object_type_of(self, instance: models.Model) -> str:
        return self.type_of(instance) if self.type_of else self.object_type


# --- what each tracked model records --------------------------------------------------------------------------


def _team_update(instance, changes: Changes) -> str | None:
    return "team.settings_changed" if changes else None


def _membership_update(instance, changes: Changes) -> str | None:
    return "membership.role_changed" if "role" in changes else None


def _token_update(instance, changes: Changes) -> str | None:
    revoked = changes.get("revoked_at")
    if revoked and revoked[0] is None and revoked[1] is not None:
        return "api_token.revoked"
    return "api_token.changed" if changes else None


def _testcase_update(instance, changes: Changes) -> str | None:
    status = changes.get("status")
    if status and status[1] in ("approved", "rejected"):
        return f"test_case.{status[1]}"
    return None  # edits, submissions and retiring are the test case's own history, not the audit trail's


def _endpoint_update(instance, changes: Changes) -> str | None:
    key_event = changes.pop("_key_event", None)
    if key_event:
        return f"provider_endpoint.{key_event}"
    return "provider_endpoint.changed" if changes else None


def _experiment_type(instance) -> str:
    return "parameter_sweep" if getattr(instance, "kind", "") == "batch" else "experiment"


ENDPOINT_FIELDS = (
    "name", "kind", "base_url", "model_names", "requests_per_minute", "tokens_per_minute", "max_concurrency",
    "price_input_per_1m_usd", "price_output_per_1m_usd", "connect_timeout_s", "read_timeout_s", "total_timeout_s",
    "metrics_url", "gpu_metrics_url",
)  # fmt: skip
TEAM_FIELDS = (
    "name", "slug", "is_demo", "batch_confirm_requests", "batch_confirm_cost_usd", "monthly_budget_usd", "monthly_budget_hard_limit",
    "show_simulated",
)  # fmt: skip

TRACKED: tuple[Tracked, ...] = (
    Tracked("accounts.Team", "team", TEAM_FIELDS, create=True, update=_team_update),
    Tracked(
        "accounts.Membership",
        "membership",
        ("user", "role"),
        create=True,
        update=_membership_update,
        deleted_action="removed",
    ),
    Tracked(
        "accounts.ApiToken",
        "api_token",
        ("name", "user", "key_prefix", "scope", "expires_at", "revoked_at"),
        create=True,
        update=_token_update,
    ),
    Tracked(
        "providers.ProviderEndpoint",
        "provider_endpoint",
        ENDPOINT_FIELDS,
        create=True,
        update=_endpoint_update,
        secret_columns=("api_key_encrypted", "api_key_last4"),
    ),
    Tracked(
        "experiments.TestCase",
        "test_case",
        ("title", "version", "status", "reviewer", "review_reason"),
        update=_testcase_update,
    ),
    Tracked("experiments.Experiment", "experiment", ("name", "status", "created_at"), type_of=_experiment_type),
    Tracked("experiments.Suite", "suite", ("name", "version", "created_at")),
    Tracked("batches.LoadSweep", "load_sweep", ("name", "status", "created_at")),
    Tracked("capacity.CapacitySearch", "capacity_search", ("name", "status", "created_at")),
    Tracked("benchmarks.BenchmarkSuite", "benchmark_suite", ("name", "version", "kind", "created_at")),
    Tracked("benchmarks.BenchmarkRun", "benchmark_run", ("name", "status", "created_at")),
    Tracked("hardware.PerformanceRun", "performance_run", ("name", "tool", "is_simulated", "created_at")),
    Tracked("workloads.Workload", "workload", ("name",)),
    Tracked("workloads.WorkloadDataset", "workload_dataset", ("name",)),
)

BY_MODEL: dict[type[models.Model], Tracked] = {}


def tracked_model(object_type: str) -> type[models.Model] | None:
    """The model behind an object type (for field names in words), or None."""
    for model, tracked in BY_MODEL.items():
        if tracked.object_type == object_type:
            return model
    return None


# --- summaries ----------------------------------------------------------------------------------------------------


def _value(instance: models.Model, name: str):
    model_field = instance._meta.get_field(name)
    if model_field.many_to_one:
        try:
            related = getattr(instance, name)
        except model_field.related_model.DoesNotExist:
            related = None
        return None if related is None else str(related)
    value = getattr(instance, model_field.attname)
    return safe_url(value) if isinstance(value, str) and name.endswith("url") else plain(value)


def _key_hint(last4: str, encrypted: str) -> str | None:
    if not encrypted:
        return None
    return f"(set) …{last4}" if last4 else "(set)"


def _signing_in(instance: models.Model):
    """The user a membership or token belongs to: the actor when nobody is signed in yet (API login, SSO)."""
    if getattr(instance, "user_id", None) is None or instance._meta.label not in (
        "accounts.Membership",
        "accounts.ApiToken",
    ):
        return None
    return instance.user


def _summary(tracked: Tracked, instance: models.Model) -> dict:
    values = {name: _value(instance, name) for name in tracked.fields}
    if "api_key_encrypted" in tracked.secret_columns:
        values["api_key"] = _key_hint(instance.api_key_last4, instance.api_key_encrypted)
    return values


def _same_secret(old_encrypted: str, new_encrypted: str) -> bool:
    """Whether two ciphertexts hold the same key (Fernet ciphertexts differ every time)."""
    try:
        return hmac.compare_digest(crypto.decrypt(old_encrypted).encode(), crypto.decrypt(new_encrypted).encode())
    except crypto.DecryptionFailed:
        return False


def _diff(tracked: Tracked, instance: models.Model, old: dict) -> Changes:
    changes: Changes = {}
    for name in tracked.fields:
        model_field = instance._meta.get_field(name)
        if model_field.attname not in old:
            continue
        before, after = old[model_field.attname], getattr(instance, model_field.attname)
        if before != after:
            if isinstance(before, str) and name.endswith("url"):
                before, after = safe_url(before), safe_url(after)
            elif model_field.many_to_one:  # ids in the row: name the objects (a reviewer, an owner)
                related = model_field.related_model._default_manager
                before = None if before is None else str(related.filter(pk=before).first() or before)
                after = None if after is None else str(getattr(instance, name, None) or after)
            changes[name] = [plain(before), plain(after)]
    if "api_key_encrypted" in old and old["api_key_encrypted"] != instance.api_key_encrypted:
        before, after = old["api_key_encrypted"], instance.api_key_encrypted
        if not before:
            event = "key_added"
        elif not after:
            event = "key_removed"
        else:
            event = "key_reencrypted" if _same_secret(before, after) else "key_rotated"
        changes["api_key"] = [_key_hint(old.get("api_key_last4", ""), before), _key_hint(instance.api_key_last4, after)]
        changes["_key_event"] = event
    return changes


# --- saves ------------------------------------------------------------------------------------------------------------


def _columns(model: type[models.Model], tracked: Tracked, update_fields) -> list[str]:
    names = list(tracked.fields) + list(tracked.secret_columns)
    if update_fields is not None:
        names = [name for name in names if name in update_fields]
        if any(name in tracked.secret_columns for name in names):  # the key and its hint are read together
            names += [name for name in tracked.secret_columns if name not in names]
    return [model._meta.get_field(name).attname for name in names]


def _on_pre_save(sender, instance, raw=False, using=None, update_fields=None, **kwargs):
    instance.__dict__.pop(_OLD_ROW, None)
    tracked = BY_MODEL.get(sender)
    if raw or tracked is None or tracked.update is None or instance._state.adding or instance.pk is None:
        return
    columns = _columns(sender, tracked, update_fields)
    if columns:
        old = sender._base_manager.using(using).filter(pk=instance.pk).values(*columns).first()
        instance.__dict__[_OLD_ROW] = old


def _on_post_save(sender, instance, created, raw=False, using=None, **kwargs):
    tracked = BY_MODEL.get(sender)
    if raw or tracked is None:
        return
    object_type = tracked.object_type_of(instance)
    if created:
        if tracked.create:
            changes = {name: [None, value] for name, value in _summary(tracked, instance).items()}
            entry = build_entry(action=f"{object_type}.created", obj=instance, object_type=object_type,
                                changes=changes, signing_in=lambda: _signing_in(instance))  # fmt: skip
            entry.save(using=using)
        return
    old = instance.__dict__.pop(_OLD_ROW, None)
    if old is None or tracked.update is None:
        return
    changes = _diff(tracked, instance, old)
    action = tracked.update(instance, changes)
    if action:
        entry = build_entry(
            action=action,
            obj=instance,
            object_type=object_type,
            changes=changes,
            signing_in=lambda: _signing_in(instance),
        )
        entry.save(using=using)


# --- deletes ------------------------------------------------------------------------------------------------------


@dataclass
class _Deleted:
    instance: models.Model
    entry: AuditEntry | None  # None: counted into the entry of the object whose delete took it along
    direct: bool


def _on_pre_delete(sender, instance, using=None, origin=None, **kwargs):
    """Django sends every pre_delete of a delete before any post_delete, and passes the `origin` (the object
    or queryset whose delete() was called) to each. So the origin collects what goes, and the last
    post_delete writes the entries at once (one INSERT):

    * each object the delete was asked for (the origin, or each row of an origin queryset) gets an entry;
    * tracked objects taken along by a cascade from a tracked origin (a team's endpoints, tokens,
      experiments …) are only counted, in "also_deleted" of their parent's entry, so deleting a team
      writes one entry, not thousands;
    * tracked objects taken along from an untracked origin (a user deleted: their memberships and
      tokens) get entries of their own, as there is no tracked parent entry to count them in."""
    tracked = BY_MODEL.get(sender)
    if tracked is None or not tracked.delete:
        return
    origin = instance if origin is None else origin
    origin_model = origin.model if isinstance(origin, models.QuerySet) else type(origin)
    direct = origin is instance or (isinstance(origin, models.QuerySet) and origin.model is sender)
    state = origin.__dict__.get(_DELETE_STATE)
    if state is None or state["posted"]:  # a new delete of the same origin (the last one failed half-way)
        state = origin.__dict__[_DELETE_STATE] = {"pending": 0, "posted": 0, "items": []}
    entry = None
    if direct or origin_model not in BY_MODEL:
        object_type = tracked.object_type_of(instance)
        changes = {name: [value, None] for name, value in _summary(tracked, instance).items()}
        action = f"{object_type}.{tracked.deleted_action}"
        entry = build_entry(
            action=action,
            obj=instance,
            object_type=object_type,
            changes=changes,
            signing_in=lambda: _signing_in(instance),
        )
    state["pending"] += 1
    state["items"].append(_Deleted(instance, entry, direct))


def _on_post_delete(sender, instance, using=None, origin=None, **kwargs):
    tracked = BY_MODEL.get(sender)
    if tracked is None or not tracked.delete:
        return
    origin = instance if origin is None else origin
    state = origin.__dict__.get(_DELETE_STATE)
    if state is None:
        return
    state["pending"] -= 1
    state["posted"] += 1
    if state["pending"] > 0:
        return
    del origin.__dict__[_DELETE_STATE]
    _write_deleted(state["items"], origin, using)


def _write_deleted(items: list[_Deleted], origin, using) -> None:
    direct = [item for item in items if item.direct and item.entry is not None]
    origin_model = origin.model if isinstance(origin, models.QuerySet) else type(origin)
    by_pk = {item.entry.object_id: item for item in direct}
    tallies: dict[int, Counter] = {}
    for item in items:
        if item.entry is not None or not direct:
            continue
        parent = direct[0]
        for model_field in item.instance._meta.concrete_fields:  # the row it belonged to, by its foreign key
            if model_field.many_to_one and model_field.related_model is origin_model:
                parent = by_pk.get(str(getattr(item.instance, model_field.attname)), parent)
                break
        tallies.setdefault(id(parent), Counter())[str(item.instance._meta.verbose_name_plural)] += 1
    for item in direct:
        if id(item) in tallies:
            item.entry.changes["also_deleted"] = [dict(sorted(tallies[id(item)].items())), None]
    entries = [item.entry for item in items if item.entry is not None]
    if entries:
        AuditEntry.objects.using(using).bulk_create(entries)


# --- wiring -----------------------------------------------------------------------------------------------------------


def connect() -> None:
    for tracked in TRACKED:
        model = apps.get_model(tracked.label)
        BY_MODEL[model] = tracked
        uid = f"audit:{tracked.label}"
        if tracked.create or tracked.update:
            pre_save.connect(_on_pre_save, sender=model, dispatch_uid=f"{uid}:pre_save")
            post_save.connect(_on_post_save, sender=model, dispatch_uid=f"{uid}:post_save")
        if tracked.delete:
            pre_delete.connect(_on_pre_delete, sender=model, dispatch_uid=f"{uid}:pre_delete")
            post_delete.connect(_on_post_delete, sender=model, dispatch_uid=f"{uid}:post_delete")


connect()
