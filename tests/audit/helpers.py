"""Reading audit entries back in tests, and checking that no secret is in one."""

import json

from apps.audit.models import AuditEntry


def entries(**filters) -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(**filters).order_by("id"))


def only(action: str, **filters) -> AuditEntry:
    """The one entry of `action` (fails when there are none or several)."""
    found = entries(action=action, **filters)
    assert len(found) == 1, f"expected one {action} entry, found {[(e.action, e.object_repr) for e in found]}"
    return found[0]


def everything_in(entry: AuditEntry) -> str:
    """Every stored value of the entry as one text, to search for secrets."""
    values = {field.attname: getattr(entry, field.attname) for field in entry._meta.concrete_fields}
    return json.dumps(values, default=str, ensure_ascii=False) + str(entry)


def assert_no_secret(entry: AuditEntry, *secrets: str) -> None:
    text = everything_in(entry)
    for secret in secrets:
        assert secret and secret not in text, f"a secret is in the audit entry {entry.action}"


def assert_attributed(entry: AuditEntry, *, user, team, via: str) -> None:
    """Who, which team, through what, from where and which request."""
    assert entry.actor_id == user.pk and entry.actor_label.startswith(user.get_username())
    assert entry.team_id == team.pk and entry.team_label == team.name
    assert entry.via == via
    assert entry.ip == "127.0.0.1"
    assert entry.request_id  # django-guid's id of the request that did it
