"""Entries are append-only in the code too: no save of an existing entry, no update, no delete."""

import pytest

from apps.audit.models import AuditEntry
from apps.audit.services import record, safe_query, safe_url

pytestmark = pytest.mark.django_db


def test_an_entry_cannot_be_changed_or_deleted(team):
    entry = record(action="experiment.deleted", team_id=team.pk, team_label=team.name)
    entry.action = "nothing"
    with pytest.raises(PermissionError):
        entry.save()
    with pytest.raises(PermissionError):
        entry.delete()
    with pytest.raises(PermissionError):
        AuditEntry.objects.filter(pk=entry.pk).update(action="nothing")
    with pytest.raises(PermissionError):
        AuditEntry.objects.filter(pk=entry.pk).delete()
    assert AuditEntry.objects.get(pk=entry.pk).action == "experiment.deleted"


def test_record_outside_a_request_is_the_systems(team):
    entry = record(action="experiment.deleted", team_id=team.pk, object_repr="e", changes={"name": ["e", None]})
    assert (entry.actor_id, entry.actor_label, entry.via, entry.ip, entry.request_id) == (None, "system", "system",
                                                                                          None, "")  # fmt: skip
    assert entry.team_label == "Alpha"


@pytest.mark.parametrize(
    ("url", "safe"),
    [
        ("http://10.0.0.5:8000/v1", "http://10.0.0.5:8000/v1"),
        ("https://user:pw@host/v1", "https://user:(hidden)@host/v1"),
        ("https://token@host/v1", "https://(hidden)@host/v1"),
        ("http://h/v1?key=abc&model=x", "http://h/v1?key=(hidden)&model=x"),
        ("sim://local?zero_latency=1", "sim://local?zero_latency=1"),
        ("", ""),
    ],
)
def test_urls_lose_their_secrets(url, safe):
    assert safe_url(url) == safe


def test_queries_lose_secret_values():
    assert safe_query("format=csv&token=abc&Password=x&q=1") == "format=csv&token=(hidden)&Password=(hidden)&q=1"
